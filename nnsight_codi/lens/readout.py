"""Lens read-outs: top-k token ids, their probabilities and the entropy of a lens distribution.

Two implementations of the same read-out, used for different jobs and compared in the tests:
- `lens_readouts` (torch, at capture time): the model's own final norm and unembedding on the
  recorded residual stream, optionally through a tuned lens;
- `store_lens` (numpy, offline): the same from a store's `hidden` and the unembedding the store
  carries (`--what ...,unembed`) or one taken from a model, without the model's modules.

Example:
    >>> logits = np.log(np.array([[0.5, 0.25, 0.25]]))
    >>> ids, probs, ent = topk_entropy(logits, k=2)
    >>> ids.tolist(), probs.round(2).tolist(), round(float(ent[0]), 3)
    ([[0, 1]], [[0.5, 0.25]], 1.04)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .unembed import Unembedding

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..tracing.codi_model import CodiModel

PREFIX = {"logit": "lens", "tuned": "tuned_lens"}
"""Store-variable prefix of each lens kind (`lens_top_ids`, `tuned_lens_top_ids`, …)."""


def topk_entropy(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`Float[ndarray, "... vocab"]` logits → top-k ids `[..., k]`, probs `[..., k]`, entropy `[...]` (nats)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    p = np.exp(logp)
    ids = np.argsort(-logp, axis=-1, kind="stable")[..., :k]
    return ids.astype(np.int32), np.take_along_axis(p, ids, -1), -(p * logp).sum(-1)


def check_k(k: int, vocab: int) -> int:
    """`k` as an int if it is a valid top-k size for a vocabulary of `vocab` tokens, else `ValueError`."""
    if not isinstance(k, int | np.integer) or not 1 <= int(k) <= vocab:
        raise ValueError(f"lens k must be in 1..{vocab} (the vocabulary size), got {k!r}")
    return int(k)


def lens_readouts(model: CodiModel | PreTrainedModel, hidden, layers, k: int, tuned=None,
                  prefix: str = "lens") -> dict[str, np.ndarray]:
    """Capture-time read-outs with the model's modules.

    Args:
        model: a CODI model / HF LM (its final norm and unembedding are used).
        hidden: `Float[ndarray | Tensor, "example step layer dim"]` pre-norm residual stream.
        layers: the residual-stream layer of each entry of the `layer` axis.
        k: top-k size.
        tuned: a `TunedLens` (its translators are applied per layer first), or None.
        prefix: variable prefix (`lens` or `tuned_lens`).

    Returns:
        `{prefix}_top_ids [e, s, l, k]`, `{prefix}_top_probs [e, s, l, k]`, `{prefix}_entropy [e, s, l]`.
    """
    import torch

    from .logit import logit_lens

    h = torch.as_tensor(np.asarray(hidden), dtype=torch.float32)
    if tuned is not None:
        h = torch.stack([tuned.transform(h[:, :, i], int(l)) for i, l in enumerate(layers)], dim=2)
    with torch.inference_mode():
        logits = logit_lens(model, h).float()
        logp = logits.log_softmax(-1)
        top = logp.topk(check_k(k, logits.shape[-1]), dim=-1)
        entropy = -(logp.exp() * logp).sum(-1)
    return {f"{prefix}_top_ids": top.indices.cpu().numpy().astype(np.int32),
            f"{prefix}_top_probs": top.values.exp().cpu().numpy(),
            f"{prefix}_entropy": entropy.cpu().numpy()}


def store_lens(ds, k: int = 10, unembedding: Unembedding | None = None, translators: dict[int, Any] | None = None,
               batch: int = 256) -> Any:
    """The logit (or, with `translators`, tuned) lens of a store's `hidden`, offline.

    Args:
        ds: an opened store (`open_store`) holding `hidden`.
        k: top-k size.
        unembedding: the unembedding to use; default: the one the store carries.
        translators: `{layer: (W [dim, dim], b [dim])}` of a tuned lens (h + W h + b), or None.

    Returns:
        an `xarray.Dataset` with `lens_top_ids`, `lens_top_probs`, `lens_entropy`
        (dims example, step, layer[, k]) and `top_string` (the top-k tokens as text, if the store
        carries `token_string`).
    """
    import xarray as xr

    if "hidden" not in ds:
        raise ValueError("this store has no `hidden`: an offline lens needs the residual stream "
                         "(capture with --what hidden,...)")
    u = unembedding or Unembedding.from_store(ds)
    hidden = ds["hidden"]
    if hidden.sizes["dim"] != u.dim:
        raise ValueError(f"the store's hidden size {hidden.sizes['dim']} does not match the unembedding's {u.dim}")
    k = check_k(k, u.vocab_size)
    layers = [int(l) for l in ds["layer"].values]
    n = hidden.sizes["example"]
    ids = np.empty((n, hidden.sizes["step"], len(layers), k), np.int32)
    probs = np.empty(ids.shape, np.float64)
    ent = np.empty(ids.shape[:3], np.float64)
    for start in range(0, n, batch):
        h = hidden.isel(example=slice(start, start + batch)).transpose("example", "step", "layer", "dim").values
        h = h.astype(np.float64)
        if translators:
            h = np.stack([_translate(h[:, :, i], translators.get(l)) for i, l in enumerate(layers)], axis=2)
        a, b, c = topk_entropy(u.logits(h), k)
        ids[start:start + len(h)], probs[start:start + len(h)], ent[start:start + len(h)] = a, b, c
    dims = ("example", "step", "layer")
    out = xr.Dataset({"lens_top_ids": (dims + ("k",), ids), "lens_top_probs": (dims + ("k",), probs),
                      "lens_entropy": (dims, ent)},
                     coords={"example": ds["example"].values, "step": ds["step"].values,
                             "layer": layers, "k": np.arange(k), "step_name": ("step", ds["step_name"].values)})
    if u.token_strings is not None:
        vocab = np.asarray(u.token_strings, dtype=object)
        out["top_string"] = (dims + ("k",), vocab[ids])
    return out


def _translate(h: np.ndarray, translator) -> np.ndarray:
    if translator is None:
        return h
    w, b = (np.asarray(x, dtype=np.float64) for x in translator)
    return h + h @ w.T + b
