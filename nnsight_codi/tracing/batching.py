"""Left padding, attention masks and position ids for batched CODI runs.

Batched answers must equal one-at-a-time answers, so every call of the latent loop gets the
running attention mask (pads masked) and position ids that count only real tokens.

Example:
    >>> ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    >>> positions_from_mask(mask).tolist()
    [[0, 1, 2], [0, 0, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _pad(sequences: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[Tensor, Tensor]:
    if len(sequences) == 0:
        raise ValueError("padding an empty batch")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq) == 0:
            raise ValueError(f"sequence {row} is empty")
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Left-pad token id lists: `(Long[Tensor, "batch seq"], Long[Tensor, "batch seq"] mask)`."""
    return _pad(sequences, pad_id, left=True)


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad token id lists: `(ids, mask)`, both `Long[Tensor, "batch seq"]`."""
    return _pad(sequences, pad_id, left=False)


def positions_from_mask(mask: Tensor) -> Tensor:
    """Position ids that count real tokens only: `Long[Tensor, "batch seq"]` (pads get 0)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def next_positions(mask: Tensor, n: int = 1) -> Tensor:
    """Position ids of `n` new tokens appended after a (left-padded) `mask`: `Long[Tensor, "batch n"]`."""
    start = mask.long().sum(-1, keepdim=True)
    return start + torch.arange(n, device=mask.device).unsqueeze(0)


def reference_prompt_mask(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """The prompt call's mask under reference masking: `Float[Tensor, "batch 1 seq seq"]`, additive.

    Causal and padding-masked (0 where attended, the dtype's minimum elsewhere), except that a
    query row with no key to attend to (a left pad's own row) attends to **every** position,
    judged by score alone. This is what transformers 4.52 computes on CUDA under SDPA
    (`AttentionMaskConverter._unmask_unattended`), where the reference's published numbers were
    made; those rows' hidden states become the pads' keys/values that the reference's unmasked
    later calls read. Given as a 4D mask, every stack and device computes the same thing.

    >>> reference_prompt_mask(torch.tensor([[0, 1, 1]]))[0, 0].eq(0).int().tolist()
    [[1, 1, 1], [0, 1, 0], [0, 1, 1]]
    """
    seq = mask.shape[-1]
    causal = torch.ones(seq, seq, dtype=torch.bool, device=mask.device).tril()
    allowed = causal.unsqueeze(0) & mask.bool().unsqueeze(1)           # [batch, query, key]
    allowed = allowed | ~allowed.any(-1, keepdim=True)                 # fully masked rows: every key
    out = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return out.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def extend_mask(mask: Tensor, n: int = 1) -> Tensor:
    """Append `n` attended positions to every row of `mask`."""
    return torch.cat([mask, mask.new_ones(mask.shape[0], n)], dim=-1)


def batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar prompt length (less padding; results are order-free)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
