"""Steering vectors: vector files for `--vector`, the pair check, and the activation-difference lens.

The vector stores themselves (`vectors_from_store`, `save_vectors`, `open_vectors`, the table below) live
in `nnsight_codi.store.vector_store` (torch-free).

Vector files for `--vector` are safetensors with `vector` (dim) or `keys` and `values`
(block, head, head_dim): `save_vector_file` / `load_vector_file`.

Example:
    >>> save_vector_file("v.safetensors", vector=vectors.vector.sel(pair_a=3, pair_b=5, layer=4).values)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from safetensors.torch import load_file, save_file

from ..lens.logit import logit_lens, top_tokens
from ..store.vector_store import VECTORS_FORMAT

if TYPE_CHECKING:
    from ..tracing.codi_model import CodiModel


def check_pair(vectors: xr.Dataset, pair: tuple[int, int]) -> tuple[int, int]:
    """`(A, B)` if both latents are in the vector set, else a `ValueError` naming what exists."""
    have = [int(x) for x in vectors["pair_a"].values]
    a, b = (int(pair[0]), int(pair[1]))
    missing = [x for x in (a, b) if x not in have]
    if missing:
        raise ValueError(f"pair {a},{b}: latent(s) {missing} not in the vectors (latents {have[0]}..{have[-1]})")
    return a, b


def save_vector_file(path: str | Path, **tensors: Any) -> Path:
    """Write `vector=` (dim) or `keys=`, `values=` (block, head, head_dim) as safetensors."""
    save_file({k: torch.as_tensor(np.asarray(v), dtype=torch.float32).contiguous() for k, v in tensors.items()},
              str(path), metadata={"format": VECTORS_FORMAT, "keys": json.dumps(sorted(tensors))})
    return Path(path)


def load_vector_file(path: str | Path) -> dict[str, Any]:
    """Read a safetensors vector file: `{"vector": Tensor}` or `{"keys": Tensor, "values": Tensor}`."""
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


def difference_lens(codi: CodiModel, vectors: xr.Dataset, k: int = 5) -> xr.Dataset:
    """Add the activation-difference lens: logit lens of `vector` (mean(A) − mean(B)) at every layer.

    Adds `lens_top_ids` (int32), `lens_top_probs` and `lens_top_tokens` (str), dims
    `(pair_a, pair_b, layer, k)`; diagonal pairs (A = A, a zero vector) get id -1 and NaN.
    """
    vec = torch.from_numpy(np.asarray(vectors["vector"].values, dtype=np.float32))   # a, b, layer, dim
    ids, probs = top_tokens(logit_lens(codi, vec), k=k)
    ids, probs = ids.cpu().numpy().astype(np.int32), probs.cpu().numpy().astype(np.float32)
    zero = (vec.abs().sum(-1) == 0).cpu().numpy()
    ids[zero], probs[zero] = -1, np.nan
    tokens = np.vectorize(lambda i: "" if i < 0 else codi.tokenizer.decode([int(i)]).strip() or repr(
        codi.tokenizer.convert_ids_to_tokens(int(i))))(ids).astype(str)
    dims = ("pair_a", "pair_b", "layer", "k")
    return vectors.assign(lens_top_ids=(dims, ids), lens_top_probs=(dims, probs), lens_top_tokens=(dims, tokens))
