"""Steering with a CoT vector: `c × v_l` added to layer l's output, as a step hook.

Two injection schedules:
- **continuous**: every forward pass of the generation — the prompt forward and every cached
  decode step (each new token is steered once, when it is computed);
- **single**: the prompt forward only; decoding then runs unsteered on the steered KV cache.

A condition is the one `Condition` type (`interventions.conditions`) in one of its CoT modes
(`direct`, `cot`, `single`, `continuous`). `Steering` is an `AddVector` (`interventions.steering`, the one hidden-state steering hook;
sites `layer{l}`), so the same object steers a plain LM's
`generate` (`cot.generation.generate_ids`, one step per forward) and the CODI latent loop
(`tracing.loop.run_loop`). Layer l follows the store convention: 0 = embedding output, l = block l-1's
output. Each edit appends a `("steered", step, n_positions)` record, so runs can count edits.

Example:
    >>> parse_condition("single:3:2.5")
    Condition(mode='single', layer=3, coef=2.5)
    >>> parse_condition("single:3:2.5").label(), parse_condition("cot").prompt_mode
    ('single:3:2.5', 'cot')
    >>> parse_condition("direct").schedule is None
    True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..interventions.conditions import PROMPT_MODES, SCHEDULES, Condition
from ..interventions.steering import AddVector

PLAIN = PROMPT_MODES  # the unsteered conditions


def parse_condition(text: str) -> Condition:
    """`direct` | `cot` | `single:LAYER:COEF` | `continuous:LAYER:COEF`."""
    parts = str(text).strip().split(":")
    name = parts[0]
    if name in PLAIN and len(parts) == 1:
        return Condition(name)
    if name in SCHEDULES and len(parts) == 3:
        try:
            return Condition(name, int(parts[1]), float(parts[2]))
        except ValueError:
            pass
    if name in SCHEDULES or name in PLAIN:
        raise ValueError(f"bad condition {text!r}: use direct, cot, single:LAYER:COEF or continuous:LAYER:COEF")
    raise ValueError(f"unknown schedule/condition {name!r}: use direct, cot, single:LAYER:COEF or "
                     "continuous:LAYER:COEF")


def check_schedule(schedule: str) -> str:
    """Return `schedule` if it is a known injection schedule; raise ValueError otherwise."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: use one of {SCHEDULES}")
    return schedule


def check_vector(vectors: Tensor, layer: int, hidden_size: int, num_layers: int) -> None:
    """Validate a `(layer, dim)` vector table against a model before any work."""
    if vectors.ndim != 2:
        raise ValueError(f"steering vectors must be (layer, dim), got shape {tuple(vectors.shape)}")
    if vectors.shape[1] != hidden_size:
        raise ValueError(f"the vector store's vectors have dim {vectors.shape[1]} but the model's hidden size is "
                         f"{hidden_size}: the store was extracted from another model")
    if vectors.shape[0] != num_layers + 1:
        raise ValueError(f"the vector store has {vectors.shape[0]} layers but the model has {num_layers + 1} "
                         f"(0..{num_layers}): the store was extracted from another model")
    if not 0 <= layer <= num_layers:
        raise ValueError(f"layer {layer} out of range 0..{num_layers}")


class Steering(AddVector):
    """Add `coef * vector` to the residual stream at `layer` on the forwards `schedule` selects:
    an `AddVector` on every step (`continuous`) or step 0 only (`single`), at every position of
    each forward, recording each edit.

    Args:
        vector: `Float[Tensor, "dim"]` (v_l).
        layer: site `layer{layer}` (0 = embeddings, l = block l-1's output).
        coef: the coefficient c.
        schedule: `"continuous"` (every forward) or `"single"` (step 0, the prompt forward, only).
        positions: optional `Bool[Tensor, "batch seq"]` of the prompt forward's positions to steer
            (default all); later steps steer their new token(s).
    """

    def __init__(self, vector: Tensor, layer: int, coef: float, schedule: str = "continuous",
                 positions: Tensor | None = None) -> None:
        self.schedule = check_schedule(schedule)
        super().__init__(vector.detach().float().cpu(), int(layer), None if schedule == "continuous" else (0,),
                         float(coef), positions="all", prompt_mask=positions, record=True)

    def prompt_edit(self) -> tuple | None:
        """What this hook does at step 0 (the prompt forward), as a comparable key: hooks with equal
        keys edit the prompt forward identically (`single` and `continuous` at one layer and coef), so
        their generations share the prompt forward and first token (`generation.generate_forked`).
        None when positions are given (a per-batch mask: never shared).
        """
        if self.prompt_mask is not None:
            return None
        return (self.layer, self.coef, tuple(self.vector.shape), self.vector.numpy().tobytes())

    def describe(self) -> dict:
        return {"kind": "cot_vector", "schedule": self.schedule, "layer": self.layer, "coef": self.coef}


def steering_for(condition: Condition, vectors: Tensor | np.ndarray | None, positions: Tensor | None = None) -> Steering | None:
    """The hook a condition needs (None for `direct` / `cot`); `positions` as `Steering`'s."""
    if condition.schedule is None:
        return None
    if vectors is None:
        raise ValueError(f"condition {condition.label()} needs a vector store (--vectors)")
    if condition.layer is None or condition.coef is None:
        raise ValueError(f"condition {condition.label()} needs a layer and a coefficient")
    return Steering(torch.as_tensor(vectors)[condition.layer], condition.layer, condition.coef, condition.schedule,
                    positions=positions)
