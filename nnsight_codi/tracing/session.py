"""The NDIF-shaped executor: an nnsight session with one trace per LM call.

NDIF runs only models it has deployed, wrapped in stock nnsight classes, so a remote CODI run
cannot use `CodiModel`'s traced driver. Here the loop lives in the session body (shipped to the
server as source), each LM call is an ordinary `model.trace(...)` of the merged LM, the
projection is called in the session body (its weights travel in the request) and the KV cache
stays on the server between traces. The loop logic is `LatentLoopState`, the same object the
local driver uses, so both give the same answers (tested with `remote="local"`).

`step_fn(model, step, sink)` runs inside every trace before the loop reads the outputs: read or
edit any module there with nnsight idioms (`model.transformer.h[2].output[:, -1] += v`) and
append what should come back to `sink`, a list saved in the session (on a remote run nothing
else leaves the server). `SessionExecutor` (what `CodiModel.executor(remote)` returns for a session)
builds `step_fn` from the step hooks of `loop.run_loop`.

Example:
    >>> lm = plain_lm_model(codi)                                  # doctest: +SKIP
    >>> tokens, records = run_latent_session(lm, codi.prj._module, codi.codi_config, codi.encode(qs),
    ...                                      remote="local")       # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import nnsight
import torch
from nnsight import TransformersModel
from torch import Tensor, nn

from ..models.codi_config import CodiConfig
from ..models.kv_cache import CACHE_ARG, REMOTE_CACHE_ARG, output_cache
from ..steps import resolve_num_latents
from .batching import positions_from_mask
from .hooks import Record, StepHook, visit_step
from .loop import LatentLoopState, Masking, fork_cache
from .portable import portable
from .remote import PortableProjection, by_value, register_package

if TYPE_CHECKING:
    from .codi_model import CodiModel

StepFn = Callable[[Any, int, list], None]


@dataclass
class SessionBranch:
    """A continuation of the trunk run inside the same session (`run_session_branches`).

    Args:
        start: the step it forks at (the trunk has run steps 0..start-1; 0 = from the prompt).
        num_latents: its K (may differ from the trunk's: `LatentLoopState.fork`).
        max_new_tokens: its bound on answer tokens.
        step_fn: called as `step_fn(model, step, sink)` in each of its traces (steps >= start).
    """

    start: int
    num_latents: int
    max_new_tokens: int
    step_fn: StepFn | None = None


def session_program(branches: Sequence[SessionBranch]) -> list[tuple[int, int | None]]:
    """The order runs are made in: `(run, stop)` pairs, run 0 the trunk (continued up to `stop`, None = to
    the end), run i > 0 branch i-1 (run to its end from a fork of the trunk where it stands). Depth
    first: the trunk stops at each fork step, its branches run, then it goes on, so one prefix is alive
    at a time.

    >>> session_program([SessionBranch(6, 6, 8), SessionBranch(3, 6, 8), SessionBranch(6, 7, 8)])
    [(0, 3), (2, None), (0, 6), (1, None), (3, None), (0, None)]
    """
    program: list[tuple[int, int | None]] = []
    for start in sorted({b.start for b in branches}):
        program.append((0, start))
        program += [(i + 1, None) for i, b in enumerate(branches) if b.start == start]
    program.append((0, None))
    return program


def plain_lm_model(codi: CodiModel, remote: bool | str | None = "local") -> TransformersModel:
    """A stock `TransformersModel` of a CodiModel's LM for a session (what NDIF would host):
    `codi.session_model(remote)` (see `CodiModel.session_model`).
    """
    return codi.session_model(remote)


class SessionExecutor:
    """The NDIF-shaped executor of `loop.run_loop` / `branches.run_branches`: one trace per LM call in a session,
    local (`remote=None`), serialised like NDIF (`"local"`) or on NDIF (`True` / a host URL).

    `model` is the stock LM the session traces (default: `codi.session_model(remote)`, built at the first
    run); `adapter` the `LoraAdapter` of a base + LoRA-interventions model (`tracing/lora.py`), cast to
    that model's dtype. `CodiModel.executor(remote)` picks it.
    """

    def __init__(self, codi: CodiModel, remote: bool | str | None, model: TransformersModel | None = None,
                 adapter: Any = None) -> None:
        self.codi, self.remote, self._model, self.adapter = codi, remote, model, adapter

    @property
    def model(self) -> TransformersModel:
        return self._model if self._model is not None else self.codi.session_model(self.remote)

    def _step_fn(self, hooks: Sequence[StepHook], last: int) -> StepFn:
        num_layers = self.codi.num_layers

        def step_fn(model: TransformersModel, step, sink):
            if step <= last:
                visit_step(model, step, hooks, sink, num_layers)
        return step_fn

    def run(self, prompts, hooks: Sequence[StepHook], k: int, max_new_tokens: int, masking: Masking,
            output_attentions: bool, last: int) -> tuple[Tensor, list[Record]]:
        """One run with `hooks` on steps <= `last`."""
        codi = self.codi
        # the same bound on decoding as the driver (the model's context length)
        max_new_tokens = codi.new_loop_state(prompts, k, max_new_tokens, masking).max_new_tokens
        prj = cast(nn.Module, codi.prj._module)  # the projection under its envoy
        return run_latent_session(self.model, prj, codi.codi_config, prompts, k, max_new_tokens, masking,
                                  remote=self.remote, step_fn=self._step_fn(hooks, last),
                                  output_attentions=output_attentions, adapter=self.adapter)

    def branches(self, prompts, branches, shared, starts, branch_k, bounds, k, max_new_tokens, masking,
                 output_attentions, answer_steps, trunk_needed):
        """Trunk and branches in one session (`run_session_branches`). Returns (trunk, {branch: run})."""
        codi = self.codi
        forked = [i for i, d in enumerate(starts) if d is not None]
        session_branches = [SessionBranch(starts[i], branch_k[i], bounds[branch_k[i]],
                                          self._step_fn([*branches[i].hooks, *shared], branch_k[i] + 1 + answer_steps))
                            for i in forked]
        prj = cast(nn.Module, codi.prj._module)  # the projection under its envoy
        results = run_session_branches(self.model, prj, codi.codi_config, prompts, k, bounds[k], masking,
                                       remote=self.remote, step_fn=self._step_fn(shared, k + 1 + answer_steps),
                                       output_attentions=output_attentions, branches=session_branches,
                                       trunk_to_end=trunk_needed, adapter=self.adapter)
        return results[0], {i: results[j + 1] for j, i in enumerate(forked)}


def _compute_dtype(model: TransformersModel, adapter: Any = None) -> torch.dtype:
    """The wrapped LM's parameter dtype (a hosted model's meta copy has it too; an adapter is cast to it);
    float32 if unknown.
    """
    if adapter is not None:
        return adapter.rows.dtype
    try:
        return next(model._module.parameters()).dtype
    except (AttributeError, StopIteration, TypeError):
        return torch.float32


@contextmanager
def _detached(obj: Any, name: str, active: bool) -> Iterator[None]:
    """Take attribute `name` off `obj` (its `__dict__`) for the duration, when `active`."""
    value = obj.__dict__.pop(name, None) if active else None
    try:
        yield
    finally:
        if value is not None:
            obj.__dict__[name] = value


@contextmanager
def _quiet_cache_deprecation() -> Iterator[None]:
    """Silence transformers' `past_key_values` rename warning for the session's calls (outside the
    session block itself: what is inside it travels to NDIF, whose sandbox refuses `warnings`).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.* is deprecated", category=FutureWarning)
        yield


def run_latent_session(model: TransformersModel, prj: nn.Module, config: CodiConfig, prompts,
                       num_latents: int | None = None, max_new_tokens: int = 256,
                       masking: Masking = "exact", remote: bool | str | None = None,
                       step_fn: StepFn | None = None, output_attentions: bool = False,
                       adapter: Any = None) -> tuple[Tensor, list]:
    """Run the CODI loop as a session (one trace per LM call).

    Returns `(answer ids Long[Tensor, "batch new"], records appended to the sink by step_fn)`.

    Args:
        model: the merged LM as a `TransformersModel` (a stock wrapper: what NDIF hosts).
        prj: the latent projection (plain `nn.Module`, shipped by value on remote runs).
        config: the model's CodiConfig.
        prompts: a `PromptBatch` (`CodiModel.encode`).
        remote: None for a local run, `"local"` to serialise the request like NDIF does,
            `True` (or a host URL) for NDIF itself (host and key from the environment).
        step_fn: called as `step_fn(model, step, sink)` inside each step's trace.
        output_attentions: ask every call for attention weights (needs eager attention).
        adapter: the `LoraAdapter` of a CODI checkpoint run as its base LM `model` + interventions
            (`tracing/lora.py`), in `model`'s dtype; None for a merged LM.
    """
    runs = run_session_branches(model, prj, config, prompts, num_latents, max_new_tokens, masking, remote,
                                step_fn, output_attentions, adapter=adapter)
    return cast(tuple[Tensor, list], runs[0])  # the trunk runs to the end: its tokens are there


def run_session_branches(model: TransformersModel, prj: nn.Module, config: CodiConfig, prompts,
                         num_latents: int | None = None, max_new_tokens: int = 256,
                         masking: Masking = "exact", remote: bool | str | None = None,
                         step_fn: StepFn | None = None, output_attentions: bool = False,
                         branches: Sequence[SessionBranch] = (),
                         trunk_to_end: bool = True, adapter: Any = None) -> list[tuple[Tensor | None, list]]:
    """The trunk run (`step_fn`) and every branch forked from it, in **one** session (one request).

    The trunk runs as `run_latent_session` would; at each branch's `start` step the loop state and
    KV cache are forked (`LatentLoopState.fork`, `fork_cache`, on the server for remote runs) and the
    branch runs to its end under its own `step_fn`, then the trunk goes on (`session_program`). So
    the shared prefix is computed and sent once, whatever the number of branches. Returns
    `[(tokens, records)]`: the trunk's first, then each branch's (records of steps >= its start).
    With `trunk_to_end=False` the trunk stops at the last fork (its tokens are None).
    """
    if remote:
        register_package()
    if adapter is None:  # a base + LoRA-interventions model's session model carries its adapter (tracing/lora.py)
        adapter = model.__dict__.get("codi_adapter")
    state = LatentLoopState(
        input_ids=prompts.input_ids, attention_mask=prompts.attention_mask, config=config,
        num_latents=resolve_num_latents(num_latents, config.num_latents),
        max_new_tokens=max_new_tokens, masking=masking, mask_dtype=_compute_dtype(model, adapter),
        feedback=getattr(prompts, "feedback", None), row_latents=getattr(prompts, "row_latents", None),
    )
    # A CODI checkpoint run as base LM + interventions (tracing/lora.py): its adapter is a
    # local of this session, so its tensors travel once per session; each call gets a second invoke.
    if adapter is not None:
        prj = adapter.project
    elif remote:  # by value (not as a reference to "model.prj", which the server's model lacks),
        prj = PortableProjection(by_value(prj))  # moved to the server model's device on first use
    project = prj if config.use_prj else None
    soft = state.feedback is not None and state.feedback.kind == "soft"  # mixes the input embedding matrix
    session_kwargs = {} if not remote else {"remote": remote}
    # The cache goes in as `past_key_values` in every session: nnsight's input processing knows that
    # name only (under another it adds a one-token attention mask, which breaks reference masking),
    # and every server transformers up to 5.39 accepts it. The output is read by the name the
    # server's transformers gives it (ours under remote="local").
    output_name = CACHE_ARG if remote in (None, False, "local") else REMOTE_CACHE_ARG
    extra: dict[str, Any] = {"output_attentions": True} if output_attentions else {}
    extra["logits_to_keep"] = 1  # the loop reads the last position's logits only
    branches = list(branches)
    program = session_program(branches)
    if not trunk_to_end and branches:
        program = program[:-1]
    step_fns = [step_fn] + [b.step_fn for b in branches]
    forks: list[Any] = [None] + [(b.num_latents, b.max_new_tokens) for b in branches]  # None: the trunk
    if remote:  # dataclasses and paths on plain twins: what NDIF's import whitelist accepts (tracing/portable.py)
        state, step_fns, adapter, project = portable((state, step_fns, adapter, project))
    # Attention weights need eager attention on the model that runs the calls: on NDIF the hosted one
    # (sdpa by default; `eager_attention` switches only a local copy), so the session sets it there
    # for this request and puts the previous implementation back at its end.
    # The model object travels with the request (its module by reference): its own `codi_adapter`
    # (a dataclass) must not ride along beside the portable copy the block uses.
    with _detached(model, "codi_adapter", bool(remote)), _quiet_cache_deprecation(), model.session(**session_kwargs):
        sinks = nnsight.save([[] for _ in step_fns])
        results = nnsight.save([None for _ in step_fns])
        attn_before = None
        if output_attentions:
            attn_before = model._module.config._attn_implementation
            model._module.set_attn_implementation("eager")
        embeddings = model._module.get_input_embeddings().weight if soft else None  # the served model's
        trunk, trunk_cache = state, None
        for run, stop in program:
            if run == 0:
                state, cache = trunk, trunk_cache
            else:  # a branch: its own copy of the trunk's state and cache, where the trunk stands
                state, cache = trunk.fork(*forks[run]), fork_cache(trunk_cache)
            fn, sink = step_fns[run], sinks[run]
            while not state.done and (stop is None or state.step < stop):
                inputs = state.call_kwargs(project=project, embeddings=embeddings)
                if cache is not None:
                    inputs[REMOTE_CACHE_ARG] = cache
                elif "position_ids" not in inputs:  # reference masking: nnsight would count real tokens only
                    inputs["position_ids"] = positions_from_mask(torch.ones_like(inputs["input_ids"]))
                with model.trace(use_cache=True, output_hidden_states=True, **extra) as tracer:
                    if adapter is not None:  # its interventions in their own invoke, so hooks keep their forward order
                        with tracer.invoke(**adapter.feed(inputs)):
                            adapter.intervene(model, inputs)
                    with tracer.invoke(**({} if adapter is not None else inputs)):
                        if fn is not None:
                            fn(model, state.step, sink)
                        out = model.output
                        hidden = out.hidden_states[-1][:, -1:]
                        logits = out.logits[:, -1]
                        cache = output_cache(out, output_name)
                # On a GPU server the model's outputs are on its device while the state's tensors stay where
                # the request put them (CPU): greedy decoding runs beside the state.
                state.observe(hidden, logits.to(state.finished.device))
            if run == 0:
                trunk_cache = cache
            if stop is None:
                results[run] = state.generated()
        if attn_before is not None and attn_before != "eager":
            model._module.set_attn_implementation(attn_before)
    return [(results[i], list(sinks[i])) for i in range(len(step_fns))]
