"""Scoring a given answer inside the loop: `ForceAnswer` (teacher forcing + log-probabilities).

Thought anchors and activation patching measure the log-probability of a fixed answer under an
intervention. `ForceAnswer` reads the logits at eot and the answer steps, records the log-prob
of the forced token, and makes that token the greedy choice, so the loop feeds the forced answer
(the hooks run on the answer steps via `run_loop(..., answer_steps=n - 1)`).

Example:
    >>> hook = ForceAnswer(torch.tensor([[5, 1]]), num_latents=2, eos_id=1)
    >>> [hook.sites(s) for s in (2, 3, 4, 5)]
    [[], ['output'], ['output'], []]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

FORCE_MARGIN = 1e4


@dataclass
class ForceAnswer:
    """Force `tokens` (`Long[Tensor, "batch n"]`, eos-padded) as the answer; record each one's log-prob.

    Records `("answer_logprob", step, Float[Tensor, "batch"])` for steps K+1 .. K+n, and
    `("answer_match", step, Bool[Tensor, "batch"])`: would greedy decoding (eot masked, as the loop
    does) have chosen the forced token here. All matches up to the first eos ⇔ the greedy answer is
    the forced answer (`matched`).
    """

    tokens: Tensor
    num_latents: int
    eos_id: int | None
    eot_id: int | None = None

    @property
    def answer_steps(self) -> int:
        """The `run_loop(answer_steps=...)` this hook needs."""
        return self.tokens.shape[1] - 1

    def sites(self, step: int) -> list[str]:
        j = step - self.num_latents - 1
        return ["output"] if 0 <= j < self.tokens.shape[1] else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        j = step - self.num_latents - 1
        logits = value.logits[:, -1]
        token = self.tokens[:, j].to(logits.device)
        logprob = torch.log_softmax(logits.float(), dim=-1).gather(-1, token[:, None])[:, 0]
        sink.append(("answer_logprob", step, logprob.detach().clone()))
        masked = logits.float().clone()
        if self.eot_id is not None and self.eot_id < masked.shape[-1]:
            masked[:, self.eot_id] = float("-inf")
        sink.append(("answer_match", step, (masked.argmax(-1) == token).detach().clone()))
        top = logits.max(dim=-1).values
        logits.scatter_(-1, token[:, None], (top + FORCE_MARGIN)[:, None].to(logits.dtype))

    def _stack(self, records: Sequence, name: str) -> Tensor:
        return torch.stack([t.float().cpu() for _, _, t in sorted((r for r in records if r[0] == name),
                                                                   key=lambda r: r[1])], dim=1)

    def total(self, records: Sequence) -> Tensor:
        """Sum of each row's recorded log-probs up to and including its first eos: `Float[Tensor, "batch"]`."""
        return (self._stack(records, "answer_logprob") * answer_mask(self.tokens.cpu(), self.eos_id)).sum(1)

    def matched(self, records: Sequence) -> Tensor:
        """`Bool[Tensor, "batch"]`: greedy decoding would have produced exactly the forced answer."""
        keep = answer_mask(self.tokens.cpu(), self.eos_id)
        return ((self._stack(records, "answer_match") >= 0.5) | (keep == 0)).all(1)


def answer_mask(tokens: Tensor, eos_id: int | None) -> Tensor:
    """1 for answer tokens up to and including the first eos of each row, else 0: `Float[Tensor, "batch n"]`."""
    if eos_id is None:
        return torch.ones_like(tokens, dtype=torch.float32)
    is_eos = (tokens == eos_id).long()
    before = is_eos.cumsum(1) - is_eos  # eos tokens strictly before this position
    return (before == 0).float()
