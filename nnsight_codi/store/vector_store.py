"""Vector stores: mean activations per latent, and A − B for every ordered pair, as labeled arrays.

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
inspected, reused and plotted. Torch-free (the analyses read vector stores offline); the steering
vector files, the pair check and the difference lens live in `nnsight_codi.interventions.steering_vectors`.

Example:
    >>> vs = vectors_from_store(open_store("ref.zarr"))               # doctest: +SKIP
    >>> vs.vector.sel(pair_a=3, pair_b=5, layer=4)                     # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .reader import open_store

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
            return vectors_from_store(open_store(path))
        raise ValueError(f"{path} is neither a vector store nor a capture store with `hidden`")
    return ds
