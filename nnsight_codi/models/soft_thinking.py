"""Soft Thinking (training-free latent reasoning on any instruct LM) as a family of the one loop.

Soft Thinking (Zhang et al., 2025) lets an instruct LM "think" in continuous *concept tokens*: instead of
sampling a token, the next input is the probability-weighted sum of the top-k next-token embeddings
(`tracing.loop.soft_input`: softmax over the top-k logits at a temperature). Thinking ends when the model is
confident: the **cold stop** ends a row's thinking once the entropy of its next-token distribution has stayed
below a threshold for `patience` consecutive steps; then the closing marker follows and the answer is
decoded greedily.

On the one loop (`tracing.loop.LatentLoopState`) that is:
- the family `soft_thinking` (markers: the chat prompt then a `bot` marker; `eot` closes the thinking;
  greedy answers mask nothing);
- the condition `SoftThinking` (a `models.family.Feedback` of kind `soft`) that carries the cold stop as
  a per-row stop rule: a row that goes cold stops taking latents (`LatentLoopState.stop_rows`: its later
  latent columns are masked and its positions count its real tokens), so its answer equals a run of that
  row alone with the number of latents it took.

Example:
    >>> rule = SoftThinking(top_k=5, cold_entropy=0.1, cold_patience=2)
    >>> rule.kind, rule.top_k, rule.name
    ('soft', 5, 'soft')
    >>> import torch
    >>> float(entropy(torch.zeros(1, 4))[0])  # uniform over 4 tokens: ln 4
    1.3862943649291992
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .family import Feedback, LatentFamily, register_family

SOFT_THINKING = register_family(LatentFamily(
    name="soft_thinking", feedback="soft", clean_question=False, mask_eot=False, eos_stops_from=0,
    pause_token="bot_id", reference="https://github.com/eric-ai-lab/Soft-Thinking"))

MARKERS: tuple[tuple[str, str], ...] = (("<think>", "</think>"), ("<bot>", "<eot>"))
"""Marker pairs tried, in order, when a model's tokenizer has both as single tokens."""


def entropy(logits: Tensor) -> Tensor:
    """`Float[Tensor, "batch"]` entropy (nats) of the softmax of `Float[Tensor, "batch vocab"]` logits."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


@dataclass(frozen=True)
class SoftThinking(Feedback):
    """Soft Thinking's latent input (`Feedback.soft`) plus its cold stop.

    Attributes:
        cold_entropy: a step is *cold* when the entropy (nats) of its next-token distribution is below this;
            None: no cold stop (every row takes all K latents).
        cold_patience: consecutive cold steps that end a row's thinking.
    """

    kind: str = "soft"
    top_k: int = 10
    name: str = "soft"
    cold_entropy: float | None = None
    cold_patience: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cold_entropy is not None and self.cold_entropy < 0:
            raise ValueError(f"cold_entropy must be >= 0 nats, got {self.cold_entropy}")
        if self.cold_patience < 1:
            raise ValueError(f"cold_patience must be >= 1, got {self.cold_patience}")

    def stop_rule(self, state: Any, logits: Tensor) -> None:
        """Called by the loop with the logits that make the next latent: count cold steps per row, stop rows
        whose count reached `cold_patience` (`state.stop_rows`).
        """
        if self.cold_entropy is None:
            return
        cold = entropy(logits) < self.cold_entropy
        count = getattr(state, "cold_count", None)
        count = torch.zeros_like(cold, dtype=torch.long) if count is None else count
        count = torch.where(cold, count + 1, torch.zeros_like(count))
        state.cold_count = count
        state.stop_rows(count >= self.cold_patience)
