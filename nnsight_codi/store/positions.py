"""Move left-padded batch arrays to the store's left-aligned position convention.

Batched runs left-pad prompts; the store keeps position p = p-th token of the example's own
sequence. `left_align` shifts each row left by its number of pad tokens and fills the tail.

Example:
    >>> import numpy as np
    >>> x = np.array([[7, 8, 9], [0, 0, 5]])          # row 1 has 2 pads in front
    >>> left_align(x, pad_counts=[0, 2], fill=-1).tolist()
    [[7, 8, 9], [5, -1, -1]]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np


def pad_counts_from_mask(mask: Any) -> np.ndarray:
    """Leading pads per row of a left-padded `(batch, seq)` attention mask (0 = pad)."""
    m = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (batch, seq), got shape {m.shape}")
    first = np.argmax(m != 0, axis=1)
    return np.where((m != 0).any(axis=1), first, m.shape[1])


def left_align(x: Any, pad_counts: Sequence[int] | np.ndarray, axis: int = -1,
               fill: Any = np.nan) -> np.ndarray:
    """Shift row b of `x` (batch first) left by `pad_counts[b]` along `axis`; fill the tail.

    `x` may be a numpy array or a torch tensor (bfloat16 becomes float32).
    """
    if hasattr(x, "detach"):
        t = x.detach().cpu()
        x = (t.float() if t.is_floating_point() else t).numpy()
    x = np.asarray(x)
    pads = np.asarray(pad_counts, dtype=np.int64)
    if pads.shape != (x.shape[0],):
        raise ValueError(f"pad_counts must have one entry per row ({x.shape[0]}), "
                         f"got shape {pads.shape}")
    axis = axis % x.ndim
    if axis == 0:
        raise ValueError("axis 0 is the batch axis")
    width = x.shape[axis]
    if (pads < 0).any() or (pads > width).any():
        raise ValueError(f"pad_counts must be in 0..{width}")
    src = np.arange(width)[None, :] + pads[:, None]            # (batch, width)
    valid = src < width
    shape = [1] * x.ndim
    shape[0], shape[axis] = x.shape[0], width
    index = np.broadcast_to(np.minimum(src, width - 1).reshape(shape),
                            x.shape)
    out = np.take_along_axis(x, index, axis=axis)
    if not np.issubdtype(out.dtype, np.floating) and isinstance(fill, float) and np.isnan(fill):
        out = out.astype(np.float32)  # NaN fill needs a float array
    np.putmask(out, ~np.broadcast_to(valid.reshape(shape), x.shape), fill)
    return out


# ----------------------------------------------------------------------- source coordinates
SOURCE_KINDS = ("prompt", "number", "bot", "latent", "eot", "eos")
"""Kinds of attention sources; latent positions are named `latent1`..`latentK` (kind `latent`)."""

_NUMBER = re.compile(r"^\s*-?\d[\d,]*(\.\d+)?\s*$")


def is_number_token(token: str) -> bool:
    """True for a token that spells (part of) a number: `"84"`, `" 1,200"`, `"3.5"`."""
    return bool(_NUMBER.match(token))


def source_labels(prompt_tokens: Sequence[str], num_latents: int | None,
                  eot_tokens: Sequence[str] = ("<eot>",)) -> tuple[list[str], list[str]]:
    """Token strings and kinds of one example's positions `[question][bot][z1..zK][eot]`.

    `prompt_tokens` is the decoded prompt ending in bot (as the model sees it); with
    `num_latents=None` (a plain LM) the prompt is all there is. `eot_tokens` is what the eot step
    feeds (`eot`, or `eot, eos`).

    Example:
        >>> toks, kinds = source_labels(["Tom", "has", "3", "<bot>"], 2)
        >>> list(zip(toks, kinds))[2:]
        [('3', 'number'), ('<bot>', 'bot'), ('z1', 'latent1'), ('z2', 'latent2'), ('<eot>', 'eot')]
    """
    tokens = [str(t) for t in prompt_tokens]
    if num_latents is None:
        return tokens, ["number" if is_number_token(t) else "prompt" for t in tokens]
    kinds = ["number" if is_number_token(t) else "prompt" for t in tokens[:-1]] + ["bot"]
    tokens += [f"z{k}" for k in range(1, num_latents + 1)] + [str(t) for t in eot_tokens]
    kinds += [f"latent{k}" for k in range(1, num_latents + 1)] + ["eot"] + ["eos"] * (len(eot_tokens) - 1)
    return tokens, kinds


def number_spans(tokens: Sequence[str], kinds: Sequence[str]) -> list[tuple[list[int], float]]:
    """Numbers of a prompt as `(positions, value)`: consecutive number tokens without a space
    between them form one number (BPE splits `1234` into `12`, `34`).

    Example:
        >>> number_spans(["a", " 12", "34", " and", " 5"], ["prompt", "number", "number", "prompt", "number"])
        [([1, 2], 1234.0), ([4], 5.0)]
    """
    spans: list[tuple[list[int], float]] = []
    current: list[int] = []

    def close() -> None:
        if current:
            text = "".join(tokens[p] for p in current).strip().replace(",", "")
            try:
                spans.append((list(current), float(text)))
            except ValueError:
                pass
            current.clear()

    for p, (tok, kind) in enumerate(zip(tokens, kinds)):
        if kind == "number" and not (current and tok[:1].isspace()):
            current.append(p)
        elif kind == "number":
            close()
            current.append(p)
        else:
            close()
    close()
    return spans


def top_k_sources(attention: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most attended positions of each attention row, heaviest first (ties: lower position).

    `attention` is `Float[ndarray, "... position"]` with NaN where there is no source. Returns
    `(positions, weights)`, each `[..., k]`; rows with fewer than `k` sources get position -1 and
    weight NaN in the tail.

    Example:
        >>> pos, w = top_k_sources(np.array([[0.2, 0.5, 0.3, np.nan]]), 3)
        >>> pos.tolist(), w.round(2).tolist()
        ([[1, 2, 0]], [[0.5, 0.3, 0.2]])
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    att = np.asarray(attention, dtype=np.float64)
    order = np.argsort(-np.nan_to_num(att, nan=-np.inf), axis=-1, kind="stable")[..., :k]
    weights = np.take_along_axis(att, order, -1)
    return np.where(np.isfinite(weights), order, -1), weights
