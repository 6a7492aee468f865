"""The unembedding (final norm + W_U) as plain numpy, so a store can carry it and be read without a model.

`Unembedding.from_model(codi)` copies the final norm's parameters and the output embedding;
`write_static(store, ...)` puts them (and the vocabulary as `token_string`) into a store;
`Unembedding.from_store(ds)` reads them back. `logits(hidden)` is the logit lens in numpy,
`unembed(final_norm(h))`, an implementation independent of the model's torch modules (the tests
compare the two).

Example:
    >>> u = Unembedding(weight=np.eye(3, 2, dtype=np.float32), norm="layernorm",
    ...                 norm_weight=np.ones(2, np.float32), norm_bias=np.zeros(2, np.float32))
    >>> u.logits(np.array([[1.0, -1.0]])).round(3).tolist()
    [[1.0, -1.0, 0.0]]
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from ..tracing.codi_model import CodiModel

NORMS = ("layernorm", "rmsnorm")
# numpy's default print options: `weight_hash` prints under these whatever the caller has set
DEFAULT_PRINT_OPTIONS = {"precision": 8, "threshold": 1000, "edgeitems": 3, "linewidth": 75, "suppress": False,
                         "nanstr": "nan", "infstr": "inf", "sign": "-", "floatmode": "maxprec", "legacy": False}


@dataclass
class Unembedding:
    """`logits = W_U · norm(h) + b` with the model's final norm.

    Attributes:
        weight: `Float[ndarray, "vocab dim"]` W_U.
        norm: "layernorm" (GPT-2) or "rmsnorm" (Llama-likes).
        norm_weight, norm_bias: `[dim]` the final norm's scale and shift (shift 0 for RMSNorm).
        bias: `[vocab]` the unembedding bias (0 for GPT-2 and Llama).
        eps: the final norm's epsilon.
    """

    weight: np.ndarray
    norm: str
    norm_weight: np.ndarray
    norm_bias: np.ndarray
    bias: np.ndarray | None = None
    eps: float = 1e-5
    token_strings: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unsupported final norm {self.norm!r}; supported: {NORMS}")
        self.weight = np.asarray(self.weight, dtype=np.float32)
        if self.weight.ndim != 2:
            raise ValueError(f"unembedding weight must be [vocab, dim], got shape {self.weight.shape}")
        dim = self.weight.shape[1]
        self.norm_weight = np.asarray(self.norm_weight, dtype=np.float32)
        self.norm_bias = np.asarray(self.norm_bias, dtype=np.float32)
        if self.norm_weight.shape != (dim,) or self.norm_bias.shape != (dim,):
            raise ValueError(f"final-norm parameters must have shape ({dim},)")
        self.bias = np.zeros(self.weight.shape[0], np.float32) if self.bias is None else \
            np.asarray(self.bias, dtype=np.float32)

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def normed(self, hidden: np.ndarray) -> np.ndarray:
        """`Float[ndarray, "... dim"]` → the final norm of it (float64)."""
        h = np.asarray(hidden, dtype=np.float64)
        if h.shape[-1] != self.dim:
            raise ValueError(f"hidden states have size {h.shape[-1]}, the unembedding expects {self.dim}")
        if self.norm == "layernorm":
            h = h - h.mean(-1, keepdims=True)
            h = h / np.sqrt((h ** 2).mean(-1, keepdims=True) + self.eps)
        else:
            h = h / np.sqrt((h ** 2).mean(-1, keepdims=True) + self.eps)
        return h * self.norm_weight + self.norm_bias

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """The logit lens: `Float[ndarray, "... dim"]` → `Float[ndarray, "... vocab"]`."""
        assert self.bias is not None  # __post_init__ fills it
        return self.normed(hidden) @ self.weight.T.astype(np.float64) + self.bias

    def unembedding_hash(self) -> str:
        """tuned-lens's hash of W_U (`weight_hash`): identifies the model a tuned lens was trained for."""
        return weight_hash(self.weight)

    # -- I/O ------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: CodiModel | PreTrainedModel) -> Unembedding:
        """Copy the final norm and W_U of a CODI model / HF causal LM (needs torch)."""
        from .logit import _module, final_norm, unembedding

        lm = _module(model)
        norm = final_norm(lm)
        head = unembedding(lm)
        kind = norm_kind(norm)
        weight = cast("torch.Tensor", norm.weight).detach().float().cpu().numpy()
        bias = getattr(norm, "bias", None)
        eps = float(getattr(norm, "eps", None) or getattr(norm, "variance_epsilon", None) or 1e-5)
        head_bias = getattr(head, "bias", None)
        tokenizer = getattr(model, "tokenizer", None)
        return cls(weight=head.weight.detach().float().cpu().numpy(), norm=kind, norm_weight=weight,
                   norm_bias=np.zeros_like(weight) if bias is None else bias.detach().float().cpu().numpy(),
                   bias=None if head_bias is None else head_bias.detach().float().cpu().numpy(), eps=eps,
                   token_strings=vocabulary(tokenizer, head.weight.shape[0]) if tokenizer is not None else None)

    @classmethod
    def from_store(cls, ds) -> Unembedding:
        """Read the unembedding a store carries (captured with `--what ...,unembed`)."""
        if "unembed_weight" not in ds:
            raise ValueError("this store has no unembedding: capture it with --what ...,unembed "
                             "(or give the model)")
        attrs = json.loads(ds.attrs.get("unembed", "{}")) if isinstance(ds.attrs.get("unembed"), str) \
            else dict(ds.attrs.get("unembed") or {})
        return cls(weight=ds["unembed_weight"].values, norm=attrs.get("norm", "layernorm"),
                   norm_weight=ds["unembed_norm_weight"].values, norm_bias=ds["unembed_norm_bias"].values,
                   bias=ds["unembed_bias"].values, eps=float(attrs.get("eps", 1e-5)),
                   token_strings=token_strings(ds))


def weight_hash(weight: Any) -> str:
    """tuned-lens's unembedding hash (`Unembed.unembedding_hash()`): sha256 of the float32 matrix
    printed by `np.array_str(W, precision=1)` (numpy's default print options), so the same model
    in float32, bfloat16 or float16 gets the same hash, and lenses move both ways between this
    project and tuned-lens without a "hash does not match" warning.

    Example:
        >>> w = np.linspace(-1, 1, 64 * 32, dtype=np.float32).reshape(64, 32)
        >>> weight_hash(w) == weight_hash(w.astype(np.float16))
        True
    """
    if hasattr(weight, "detach"):
        weight = weight.detach().cpu().float().numpy()
    weight = np.asarray(weight, dtype=np.float32)
    with np.printoptions(**DEFAULT_PRINT_OPTIONS):
        text = np.array_str(weight, precision=1)
    return hashlib.sha256(str.encode(text)).hexdigest()


def exact_weight_hash(weight: Any) -> str:
    """sha256 of a matrix's float32 bytes: the hash lenses written before tuned-lens's scheme carry
    (still accepted when loading them).
    """
    if hasattr(weight, "detach"):
        weight = weight.detach().float().cpu().numpy()
    return hashlib.sha256(np.ascontiguousarray(weight, dtype=np.float32).tobytes()).hexdigest()


def norm_kind(norm) -> str:
    """'layernorm' or 'rmsnorm' for a final-norm module; other norms are refused."""
    import torch

    if isinstance(norm, torch.nn.LayerNorm):
        return "layernorm"
    name = type(norm).__name__
    if "RMSNorm" in name and "Gemma" not in name:
        return "rmsnorm"
    raise ValueError(f"final norm {name} is not supported by the stored unembedding "
                     "(LayerNorm and Llama-style RMSNorm are)")


def vocabulary(tokenizer, size: int) -> list[str]:
    """The decoded string of every token id 0..size-1 (ids past the tokenizer's vocabulary: '')."""
    n = len(tokenizer)
    out = []
    for i in range(size):
        out.append(tokenizer.decode([i]) if i < n else "")
    return out


def token_strings(ds) -> list[str] | None:
    """The vocabulary a store carries (`token_string`), or None."""
    if "token_string" not in ds:
        return None
    return [str(s) for s in ds["token_string"].values]


def write_static(path: str | Path, token_strings: list[str], unembedding: Unembedding | None = None) -> None:
    """Write the per-store variables into the store at `path`: `token_string (token_id)` and, given
    an unembedding, `unembed_weight (token_id, dim)`, `unembed_bias (token_id)`,
    `unembed_norm_weight / unembed_norm_bias (dim)` (norm kind and eps in the `unembed` attribute).

    Idempotent: a resumed capture writes the same values again.
    """
    import xarray as xr
    import zarr

    data: dict[str, Any] = {
        "token_string": (("token_id",), np.asarray(token_strings, dtype=object),
                         {"description": "decoded string of each vocabulary id"}),
    }
    if unembedding is not None:
        data.update({
            "unembed_weight": (("token_id", "dim"), unembedding.weight, {"description": "unembedding W_U"}),
            "unembed_bias": (("token_id",), unembedding.bias, {"description": "unembedding bias (0 if none)"}),
            "unembed_norm_weight": (("dim",), unembedding.norm_weight, {"description": "final norm scale"}),
            "unembed_norm_bias": (("dim",), unembedding.norm_bias, {"description": "final norm shift (0 for RMSNorm)"}),
        })
    ds = xr.Dataset(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attrs = dict(zarr.open_group(path, mode="r", zarr_format=3).attrs)  # xarray's append resets them
        ds.to_zarr(path, mode="a", zarr_format=3, consolidated=False)
        if unembedding is not None:
            attrs["unembed"] = {"norm": unembedding.norm, "eps": unembedding.eps,
                                "hash": unembedding.unembedding_hash()}
        zarr.open_group(path, mode="r+", zarr_format=3).attrs.update(attrs)
        zarr.consolidate_metadata(path)
