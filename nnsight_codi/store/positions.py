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
