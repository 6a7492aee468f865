"""Branches: several runs of the latent loop over the same prompts that pay for their shared prefix once.

A `Branch` is one run (its hooks, its number of latents). `run_branches` runs a hookless *trunk* and forks
each branch from it at its `divergence_step`, the first step where the branch can differ; the executor the
model picks runs trunk and forks (the traced driver: `loop.DirectExecutor`, in segments from
`loop.LoopSnapshot` copies; a session: `session.run_session_branches`). Results equal `loop.run_loop` per
branch exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..models.family import Feedback
from ..steps import resolve_num_latents
from .hooks import Record, StepHook
from .loop import Masking, _run_loop, first_visit, with_feedback

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor

    from .codi_model import CodiModel

__all__ = ["Branch", "divergence_step", "run_branches"]


@dataclass(frozen=True)
class Branch:
    """One run of `run_branches`: its own hooks, and its own number of latents (None: the trunk's K)."""

    hooks: Sequence[StepHook] = ()
    num_latents: int | None = None


def divergence_step(hooks: Sequence[StepHook], num_latents: int, trunk_latents: int,
                    answer_steps: int = 0) -> int | None:
    """The first step at which a run with `hooks` and K = `num_latents` can differ from the hookless
    run with K = `trunk_latents`: the first step a hook visits, or the first step whose kind differs
    (eot under the smaller K, a latent under the larger: `min(K, K') + 1`). None: they never differ.

    >>> divergence_step([], 4, 6), divergence_step([], 7, 6), divergence_step([], 6, 6)
    (5, 7, None)
    """
    last = num_latents + 1 + int(answer_steps)
    kind = None if num_latents == trunk_latents else min(num_latents, trunk_latents) + 1
    hooked = first_visit(hooks, 0, last)
    steps = [s for s in (kind, hooked) if s is not None]
    return min(steps) if steps else None


def run_branches(codi: CodiModel, prompts, branches: Sequence[Branch], shared: Sequence[StepHook] = (),
                 num_latents: int | None = None, max_new_tokens: int = 256, masking: Masking = "exact",
                 remote: bool | str | None = None, output_attentions: bool = False, answer_steps: int = 0,
                 fork: bool = True, grad: bool = False, feedback: Feedback | str | None = None
                 ) -> list[tuple[Int[Tensor, "batch new"], list[Record]]]:
    """Every branch's `run_loop(codi, prompts, [*branch.hooks, *shared], branch K, ...)`, paying for a shared
    prefix once.

    A *trunk* runs the loop with K = `num_latents` and the `shared` hooks only. Each branch forks from
    it at its `divergence_step` (the first step its hooks visit, or where its K changes the step's
    kind) and continues under its own hooks + `shared`: a KV-cache condition from the last latent, a
    patch of latent k from step k, an extra latent step from step K, early answering after latent k
    from step k+1; a branch that never differs (no hooks, same K) is the trunk. The records of a branch
    are the trunk's for the steps before its fork and its own after, exactly what the unforked run
    records (the `shared` hooks see the same values in both). Results equal the unforked runs
    (`fork=False`, which calls `run_loop` per branch) token for token and activation for activation:
    the same calls on the same tensors, only fewer of them.

    Locally (traced driver) the trunk stops at each fork step, its branches run one after another
    from copies (`LoopSnapshot.branch`), then it goes on, so one prefix is held at a time. With
    `remote` (or a base + LoRA-interventions model) everything runs in **one** session, so one
    request carries the prefix once and every branch (`session.run_session_branches`).

    Like `run_loop`, it runs under `torch.inference_mode()` unless `grad=True`, and takes a `feedback` condition.

    Returns `[(answer ids Long[Tensor, "batch new"], records)]` in the order of `branches`.
    """
    prompts = with_feedback(codi, prompts, feedback)
    with contextlib.nullcontext() if grad else torch.inference_mode():
        return _run_branches(codi, prompts, branches, shared, resolve_num_latents(num_latents, codi.num_latents),
                             max_new_tokens, masking, remote, output_attentions, answer_steps, fork)


def _run_branches(codi: CodiModel, prompts, branches: Sequence[Branch], shared: Sequence[StepHook],
                  k: int, max_new_tokens: int, masking: Masking, remote: bool | str | None,
                  output_attentions: bool, answer_steps: int, fork: bool
                  ) -> list[tuple[Int[Tensor, "batch new"], list[Record]]]:
    if answer_steps < 0:
        raise ValueError(f"answer_steps must be >= 0, got {answer_steps}")
    shared = list(shared)
    branch_k = [resolve_num_latents(b.num_latents, k) for b in branches]  # a branch's None: the trunk's K
    if not fork:
        return [_run_loop(codi, prompts, [*b.hooks, *shared], bk, max_new_tokens, masking, remote, output_attentions,
                          answer_steps) for b, bk in zip(branches, branch_k)]
    # the answer bound of each run as run_loop gives it (the model's context length may cut it per K)
    bounds = {kk: codi.new_loop_state(prompts, kk, max_new_tokens, masking).max_new_tokens
              for kk in {k, *branch_k}}
    starts = [divergence_step(b.hooks, bk, k, answer_steps) for b, bk in zip(branches, branch_k)]
    forked = [i for i, d in enumerate(starts) if d is not None]
    trunk_needed = len(forked) < len(branches)
    trunk, runs = codi.executor(remote).branches(prompts, branches, shared, starts, branch_k, bounds, k,
                                                 max_new_tokens, masking, output_attentions, answer_steps,
                                                 trunk_needed)
    out = []
    for i, d in enumerate(starts):
        if d is None:
            out.append(trunk)
        else:
            tokens, records = runs[i]
            out.append((tokens, [r for r in trunk[1] if r[1] < d] + records))
    return out
