"""Step hooks: capture and interventions as options of the one latent loop.

A hook names the **sites** it needs at each step and is handed each site's live value inside
the step's trace, where it may read it (append to the sink) or edit it in place. The runner
visits sites in forward order — `input` (the step's input embeddings), `layer0` … `layerL`
(the residual stream: layer 0 = embedding output = block 0's input, layer l = block l-1's
output, pre final norm), `output` (the LM's output object: logits, attentions, KV cache) —
so any set of hooks composes without nnsight's out-of-order errors.

`run_loop` runs the hooks on either executor: the traced driver (`CodiModel.latent_generate`,
local) or the NDIF-shaped session (`remote="local"` / `True`). The sink is one
`nnsight.save([])` list of `(name, step, tensor)` records, so only what hooks record leaves
the model on remote runs.

`run_branches` runs several hook sets (and numbers of latents) over the same prompts as branches
of one hookless trunk, each forked (`loop.LoopSnapshot`) at the first step where it can differ,
so the prefix they share is computed once; results equal `run_loop` per hook set exactly.

Example:
    >>> class LastLayerNorms:
    ...     def sites(self, step): return ["layer2"]
    ...     def visit(self, site, value, step, sink): sink.append(("norm", step, value[:, -1].norm(dim=-1)))
    >>> tokens, records = run_loop(codi, codi.encode(qs), [LastLayerNorms()])   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import nnsight
import torch
from torch import Tensor

from ..models.architecture import transformer_blocks
from .loop import LoopSnapshot, Masking

Record = tuple[str, int, Any]


class StepHook(Protocol):
    """What the runner needs of a hook."""

    def sites(self, step: int) -> Iterable[str]:
        """Sites this hook visits at `step` (`"input"`, `"layer{l}"`, `"output"`)."""

    def visit(self, site: str, value: Any, step: int, sink: list[Record]) -> None:
        """Read or edit `value` in place; append `(name, step, tensor)` records to `sink`."""


def site_order(site: str) -> int:
    if site == "input":
        return -1
    if site == "output":
        return 1 << 30
    if site.startswith("layer") and site[5:].isdigit():
        return int(site[5:])
    raise ValueError(f"unknown site {site!r}: use 'input', 'layer<l>' or 'output'")


def block_list(model) -> Any:
    """The envoy list of transformer blocks (`transformer.h` for GPT-2, `model.layers` for Llama-likes)."""
    return transformer_blocks(model)


def _unwrap(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def visit_step(model, step: int, hooks: Sequence[StepHook], sink: list[Record], num_layers: int) -> None:
    """Called inside one step's trace: hand every hook its sites, in forward order."""
    wanted: dict[str, list[StepHook]] = {}
    for hook in hooks:
        for site in hook.sites(step):
            wanted.setdefault(site, []).append(hook)
    if not wanted:
        return
    blocks = None
    for site in sorted(wanted, key=site_order):
        if site == "input":
            value = model.inputs[1].get("inputs_embeds")
            if value is None:  # a token step in the session executor: nothing embedded yet
                continue
        elif site == "output":
            value = model.output
        else:
            layer = site_order(site)
            if not 0 <= layer <= num_layers:
                raise ValueError(f"{site}: layer out of range 0..{num_layers}")
            blocks = blocks if blocks is not None else block_list(model)
            value = blocks[0].input if layer == 0 else _unwrap(blocks[layer - 1].output)
        for hook in wanted[site]:
            hook.visit(site, value, step, sink)


def run_loop(codi, prompts, hooks: Sequence[StepHook] = (), num_latents: int | None = None,
             max_new_tokens: int = 256, masking: Masking = "exact", remote: bool | str | None = None,
             output_attentions: bool = False, answer_steps: int = 0, grad: bool = False
             ) -> tuple[Tensor, list[Record]]:
    """Run the latent loop with `hooks` on steps bot..eot; return `(answer ids, records)`.

    `answer_steps` > 0 also hands the hooks the first `answer_steps` answer steps (steps
    K+2 .. K+1+answer_steps); the loop must make at least that many calls (e.g. a hook that
    forces the answer tokens, `interventions.ForceAnswer`).

    The loop runs under `torch.inference_mode()` (records are inference tensors); `grad=True`
    runs it under the caller's autograd mode instead, for gradients through the loop.
    """
    with contextlib.nullcontext() if grad else torch.inference_mode():
        return _run_loop(codi, prompts, hooks, num_latents, max_new_tokens, masking, remote, output_attentions,
                         answer_steps)


def _run_loop(codi, prompts, hooks: Sequence[StepHook], num_latents: int | None, max_new_tokens: int,
              masking: Masking, remote: bool | str | None, output_attentions: bool,
              answer_steps: int) -> tuple[Tensor, list[Record]]:
    k = codi.num_latents if num_latents is None else int(num_latents)
    if answer_steps < 0:
        raise ValueError(f"answer_steps must be >= 0, got {answer_steps}")
    last = k + 1 + int(answer_steps)
    num_layers = codi.num_layers
    hooks = list(hooks)
    interventions = getattr(codi, "session_model", None) is not None  # base LM + LoRA interventions: sessions only
    if not hooks and not remote and not interventions:  # nothing to visit: no trace needed
        tokens = codi.latent_generate(prompts, num_latents=k, max_new_tokens=max_new_tokens, masking=masking,
                                      output_attentions=output_attentions)
        return tokens, []
    if remote or interventions:
        from .session import plain_lm_model, run_latent_session

        # the same bound on decoding as the driver (the model's context length)
        max_new_tokens = codi.new_loop_state(prompts, k, max_new_tokens, masking).max_new_tokens

        def step_fn(model, step, sink):
            if step <= last:
                visit_step(model, step, hooks, sink, num_layers)

        return run_latent_session(plain_lm_model(codi, remote), codi.prj._module, codi.codi_config, prompts, k,
                                  max_new_tokens, masking, remote=remote, step_fn=step_fn,
                                  output_attentions=output_attentions)
    with codi.latent_generate(prompts, num_latents=k, max_new_tokens=max_new_tokens, masking=masking,
                              output_attentions=output_attentions) as tracer:
        sink = nnsight.save([])
        for step in tracer.iter[: last + 1]:
            visit_step(codi, step, hooks, sink, num_layers)
        tokens = tracer.result.save()
    return tokens, list(sink)


# -- forking: runs that share a prefix ----------------------------------------------------------------


@dataclass(frozen=True)
class Branch:
    """One run of `run_branches`: its own hooks, and its own number of latents (None: the trunk's K)."""

    hooks: Sequence[StepHook] = ()
    num_latents: int | None = None


def first_visit(hooks: Sequence[StepHook], first: int, last: int) -> int | None:
    """The first step in `first..last` at which any of `hooks` names a site (None if none does)."""
    for step in range(first, last + 1):
        if any(list(hook.sites(step)) for hook in hooks):
            return step
    return None


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


def _segment(codi, snapshot: LoopSnapshot, hooks: Sequence[StepHook], stop_at: int | None, last: int,
             output_attentions: bool) -> tuple[Any, list[Record]]:
    """Continue `snapshot` in place up to `stop_at` (None: to the end) with `hooks` on steps <= `last`,
    through the traced driver; a trace only where a hook visits. Returns (tokens or the snapshot, records)."""
    first = snapshot.step
    end = last + 1 if stop_at is None else min(last + 1, stop_at)
    if first_visit(hooks, first, end - 1) is None:
        return codi.latent_generate(snapshot, stop_at=stop_at, output_attentions=output_attentions), []
    num_layers = codi.num_layers
    with codi.latent_generate(snapshot, stop_at=stop_at, output_attentions=output_attentions) as tracer:
        sink = nnsight.save([])
        for i in tracer.iter[: end - first]:
            visit_step(codi, first + i, hooks, sink, num_layers)
        result = tracer.result.save()
    return result, list(sink)


def run_branches(codi, prompts, branches: Sequence[Branch], shared: Sequence[StepHook] = (),
                 num_latents: int | None = None, max_new_tokens: int = 256, masking: Masking = "exact",
                 remote: bool | str | None = None, output_attentions: bool = False, answer_steps: int = 0,
                 fork: bool = True, grad: bool = False) -> list[tuple[Tensor, list[Record]]]:
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

    Like `run_loop`, it runs under `torch.inference_mode()` unless `grad=True`.

    Returns `[(answer ids Long[Tensor, "batch new"], records)]` in the order of `branches`.
    """
    with contextlib.nullcontext() if grad else torch.inference_mode():
        return _run_branches(codi, prompts, branches, shared, num_latents, max_new_tokens, masking, remote,
                             output_attentions, answer_steps, fork)


def _run_branches(codi, prompts, branches: Sequence[Branch], shared: Sequence[StepHook], num_latents: int | None,
                  max_new_tokens: int, masking: Masking, remote: bool | str | None, output_attentions: bool,
                  answer_steps: int, fork: bool) -> list[tuple[Tensor, list[Record]]]:
    k = codi.num_latents if num_latents is None else int(num_latents)
    if answer_steps < 0:
        raise ValueError(f"answer_steps must be >= 0, got {answer_steps}")
    shared = list(shared)
    branch_k = [k if b.num_latents is None else int(b.num_latents) for b in branches]
    if not fork:
        return [_run_loop(codi, prompts, [*b.hooks, *shared], bk, max_new_tokens, masking, remote, output_attentions,
                          answer_steps) for b, bk in zip(branches, branch_k)]
    # the answer bound of each run as run_loop gives it (the model's context length may cut it per K)
    bounds = {kk: codi.new_loop_state(prompts, kk, max_new_tokens, masking).max_new_tokens
              for kk in {k, *branch_k}}
    starts = [divergence_step(b.hooks, bk, k, answer_steps) for b, bk in zip(branches, branch_k)]
    forked = [i for i, d in enumerate(starts) if d is not None]
    trunk_needed = len(forked) < len(branches)
    session = remote or getattr(codi, "session_model", None) is not None
    if session:
        trunk, runs = _session_branches(codi, prompts, branches, shared, starts, branch_k, bounds, k,
                                        max_new_tokens, masking, remote, output_attentions, answer_steps,
                                        trunk_needed)
    else:
        trunk, runs = _driver_branches(codi, prompts, branches, shared, starts, branch_k, bounds, k,
                                       max_new_tokens, masking, output_attentions, answer_steps, trunk_needed)
    out = []
    for i, d in enumerate(starts):
        if d is None:
            out.append(trunk)
        else:
            tokens, records = runs[i]
            out.append((tokens, [r for r in trunk[1] if r[1] < d] + records))
    return out


def _driver_branches(codi, prompts, branches, shared, starts, branch_k, bounds, k, max_new_tokens, masking,
                     output_attentions, answer_steps, trunk_needed):
    """Traced driver: the trunk in segments up to each fork step, each fork's branches from copies of it
    (depth first: one prefix held at a time, about the memory of two runs). Returns (trunk, {branch: run})."""
    last = k + 1 + answer_steps
    snapshot = LoopSnapshot(codi.new_loop_state(prompts, k, max_new_tokens, masking))
    trunk_records: list[Record] = []
    runs: dict[int, tuple[Tensor, list[Record]]] = {}
    for start in sorted({d for d in starts if d is not None}):
        snapshot, records = _segment(codi, snapshot, shared, start, last, output_attentions)
        trunk_records += records
        for i, (b, d) in enumerate(zip(branches, starts)):
            if d == start:
                fork = snapshot.branch(branch_k[i], bounds[branch_k[i]])
                runs[i] = _segment(codi, fork, [*b.hooks, *shared], None, branch_k[i] + 1 + answer_steps,
                                   output_attentions)
    tokens = None
    if trunk_needed:
        tokens, records = _segment(codi, snapshot, shared, None, last, output_attentions)
        trunk_records += records
    return (tokens, trunk_records), runs


def _session_branches(codi, prompts, branches, shared, starts, branch_k, bounds, k, max_new_tokens, masking,
                      remote, output_attentions, answer_steps, trunk_needed):
    """Session executor: trunk and branches in one session (`session.run_session_branches`)."""
    from .session import SessionBranch, plain_lm_model, run_session_branches

    num_layers = codi.num_layers

    def step_fn_for(hooks, last):
        def step_fn(model, step, sink):
            if step <= last:
                visit_step(model, step, hooks, sink, num_layers)
        return step_fn

    forked = [i for i, d in enumerate(starts) if d is not None]
    session_branches = [SessionBranch(starts[i], branch_k[i], bounds[branch_k[i]],
                                      step_fn_for([*branches[i].hooks, *shared], branch_k[i] + 1 + answer_steps))
                        for i in forked]
    results = run_session_branches(plain_lm_model(codi, remote), codi.prj._module, codi.codi_config, prompts, k,
                                   bounds[k], masking, remote=remote, step_fn=step_fn_for(shared, k + 1 + answer_steps),
                                   output_attentions=output_attentions, branches=session_branches,
                                   trunk_to_end=trunk_needed)
    return results[0], {i: results[j + 1] for j, i in enumerate(forked)}
