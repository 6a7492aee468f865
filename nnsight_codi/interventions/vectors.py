"""Steering vectors as labeled arrays: mean activations per latent, and A − B for every ordered pair.

From a capture store (`hidden`, `latent_input`, `kv`, `prompt_length`) `vectors_from_store` builds
one `xarray.Dataset`:

| variable | dims | meaning |
|---|---|---|
| `mean_hidden` | latent, layer, dim | mean residual stream at latent k (layer 0..L) |
| `vector` | pair_a, pair_b, layer, dim | `mean_hidden[A] − mean_hidden[B]` (hidden steering) |
| `mean_kv` | latent, block, kv_part, head, head_dim | mean cached key/value at latent k's position |
| `kv_vector` | pair_a, pair_b, block, kv_part, head, head_dim | `mean_kv[A] − mean_kv[B]` (KV steering) |
| `latent_mean`, `latent_std` | step, dim | per-dimension stats of the latent inputs (random patch) |

`latent`, `pair_a`, `pair_b` are latent indices 1..K; `block` b is the cache of block b (0..L-1);
`layer` follows the store (0 = embedding output, l = block l-1's output). `save_vectors` writes it as
a zarr group (`open_vectors` reads it back; plain `xarray.open_zarr` works too), so vectors can be
inspected, reused and plotted. Vector files for `--vector` are safetensors with `vector` (dim) or
`keys` and `values` (block, head, head_dim): `save_vector_file` / `load_vector_file`.

Example:
    >>> vs = vectors_from_store(open_store("ref.zarr"))               # doctest: +SKIP
    >>> vs.vector.sel(pair_a=3, pair_b=5, layer=4)                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

VECTORS_FORMAT = "nnsight-codi vectors"
VECTORS_VERSION = 1


def _latent_steps(ds: xr.Dataset) -> list[int]:
    names = [str(s) for s in ds["step_name"].values]
    return [int(n[6:]) for n in names if n.startswith("latent")]


def vectors_from_store(ds: xr.Dataset, examples: Any = None) -> xr.Dataset:
    """Mean activations per latent and their ordered-pair differences (see the module table).

    `ds` is a capture store (`open_store`) with `hidden` (all layers) and optionally `kv` and
    `latent_input`; `examples` optionally selects examples (e.g. only correct ones).
    """
    if "hidden" not in ds:
        raise ValueError("vectors need a capture store with the `hidden` variable")
    if examples is not None:
        ds = ds.sel(example=examples)
    latents = _latent_steps(ds)
    if not latents:
        raise ValueError("the store has no latent steps (num_latents = 0)")
    hidden = ds["hidden"].astype("float64").mean("example").load()            # step, layer, dim
    mean_hidden = hidden.isel(step=latents).rename(step="latent").assign_coords(latent=latents)
    mean_hidden = mean_hidden.drop_vars([c for c in mean_hidden.coords if c not in ("latent", "layer")])
    a = mean_hidden.rename(latent="pair_a")
    b = mean_hidden.rename(latent="pair_b")
    vector = (a - b).transpose("pair_a", "pair_b", "layer", "dim")
    out = xr.Dataset({"mean_hidden": mean_hidden.astype("float32"), "vector": vector.astype("float32")})
    if "kv" in ds:
        out["mean_kv"] = _mean_kv(ds, latents)
        ka, kb = out["mean_kv"].rename(latent="pair_a"), out["mean_kv"].rename(latent="pair_b")
        out["kv_vector"] = (ka - kb).transpose("pair_a", "pair_b", ...).astype("float32")
    if "latent_input" in ds:
        li = ds["latent_input"].astype("float64")
        with warnings.catch_warnings():  # steps without a latent input (bot, eot) are all-NaN: 0/0 by design
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            out["latent_mean"] = li.mean("example").fillna(0.0).astype("float32").drop_vars(
                [c for c in li.coords if c not in ("step",)], errors="ignore").load()
            out["latent_std"] = li.std("example").fillna(1.0).astype("float32").drop_vars(
                [c for c in li.coords if c not in ("step",)], errors="ignore").load()
    out.attrs.update({"format": VECTORS_FORMAT, "version": VECTORS_VERSION, "num_examples": int(ds.sizes["example"]),
                      "source": str(ds.attrs.get("store_path", "")),
                      "model_id": str(ds.attrs.get("model_id", "")),
                      "layer_doc": "layer 0 = embedding output; layer l = output of block l-1",
                      "pair_doc": "vector[pair_a=A, pair_b=B] = mean at latent A - mean at latent B",
                      "block_doc": "block b = the KV cache of transformer block b (0..L-1)"})
    return out


def _mean_kv(ds: xr.Dataset, latents: list[int]) -> xr.DataArray:
    """Mean cached KV at each latent's position: `(latent, block, kv_part, head, head_dim)`."""
    kv = ds["kv"]
    layers = [int(l) for l in kv["layer"].values if int(l) >= 1]
    if sorted(layers) != list(range(1, max(layers) + 1)):
        raise ValueError(f"KV vectors need the cache of every block (layers 1..L captured), got layers {layers}")
    kv = kv.sel(layer=sorted(layers))
    plen = ds["prompt_length"].values.astype(np.int64)                       # prompt incl. bot
    arr = kv.values.astype(np.float64)                                        # ex, layer, part, head, pos, hd
    rows = np.arange(arr.shape[0])
    per = np.stack([arr[rows, :, :, :, plen + k - 1, :].mean(0) for k in latents])  # latent, layer, part, head, hd
    coords = {"latent": latents, "block": [l - 1 for l in sorted(layers)], "kv_part": ["key", "value"]}
    return xr.DataArray(per.astype(np.float32), dims=("latent", "block", "kv_part", "head", "head_dim"), coords=coords)


def check_pair(vectors: xr.Dataset, pair: tuple[int, int]) -> tuple[int, int]:
    """`(A, B)` if both latents are in the vector set, else a `ValueError` naming what exists."""
    have = [int(x) for x in vectors["pair_a"].values]
    a, b = (int(pair[0]), int(pair[1]))
    missing = [x for x in (a, b) if x not in have]
    if missing:
        raise ValueError(f"pair {a},{b}: latent(s) {missing} not in the vectors (latents {have[0]}..{have[-1]})")
    return a, b


def save_vectors(vectors: xr.Dataset, path: str | Path) -> Path:
    """Write a vector set as a zarr group (overwrites)."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vectors.to_zarr(path, mode="w", consolidated=False)
    return path


def open_vectors(path: str | Path) -> xr.Dataset:
    """Read a vector set written by `save_vectors` (loaded into memory)."""
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"no vector store at {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(path, consolidated=False).load()
    if ds.attrs.get("format") != VECTORS_FORMAT:
        if "hidden" in ds:  # a capture store: build the vectors from it
            from ..store import open_store

            return vectors_from_store(open_store(path))
        raise ValueError(f"{path} is neither a vector store nor a capture store with `hidden`")
    return ds


def save_vector_file(path: str | Path, **tensors: Any) -> Path:
    """Write `vector=` (dim) or `keys=`, `values=` (block, head, head_dim) as safetensors."""
    import torch
    from safetensors.torch import save_file

    save_file({k: torch.as_tensor(np.asarray(v), dtype=torch.float32).contiguous() for k, v in tensors.items()},
              str(path), metadata={"format": VECTORS_FORMAT, "keys": json.dumps(sorted(tensors))})
    return Path(path)


def load_vector_file(path: str | Path) -> dict[str, Any]:
    """Read a safetensors vector file: `{"vector": Tensor}` or `{"keys": Tensor, "values": Tensor}`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file {path} not found")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path} is not a safetensors file: {err}") from err
    if "vector" in tensors:
        return {"vector": tensors["vector"].float()}
    if "keys" in tensors and "values" in tensors:
        return {"keys": tensors["keys"].float(), "values": tensors["values"].float()}
    raise ValueError(f"{path}: expected a `vector` tensor, or `keys` and `values`; found {sorted(tensors)}")


def difference_lens(codi, vectors: xr.Dataset, k: int = 5) -> xr.Dataset:
    """Add the activation-difference lens: logit lens of `vector` (mean(A) − mean(B)) at every layer.

    Adds `lens_top_ids` (int32), `lens_top_probs` and `lens_top_tokens` (str), dims
    `(pair_a, pair_b, layer, k)`; diagonal pairs (A = A, a zero vector) get id -1 and NaN.
    """
    import torch

    from ..lens.logit import logit_lens, top_tokens

    vec = torch.from_numpy(np.asarray(vectors["vector"].values, dtype=np.float32))   # a, b, layer, dim
    ids, probs = top_tokens(logit_lens(codi, vec), k=k)
    ids, probs = ids.cpu().numpy().astype(np.int32), probs.cpu().numpy().astype(np.float32)
    zero = (vec.abs().sum(-1) == 0).cpu().numpy()
    ids[zero], probs[zero] = -1, np.nan
    tokens = np.vectorize(lambda i: "" if i < 0 else codi.tokenizer.decode([int(i)]).strip() or repr(
        codi.tokenizer.convert_ids_to_tokens(int(i))))(ids).astype(str)
    dims = ("pair_a", "pair_b", "layer", "k")
    return vectors.assign(lens_top_ids=(dims, ids), lens_top_probs=(dims, probs), lens_top_tokens=(dims, tokens))
