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
else leaves the server). `hooks.run_loop` builds `step_fn` from step hooks.

Example:
    >>> lm = plain_lm_model(codi)                                  # doctest: +SKIP
    >>> tokens, records = run_latent_session(lm, codi.prj._module, codi.codi_config, codi.encode(qs),
    ...                                      remote="local")       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nnsight
import torch
from nnsight import TransformersModel
from torch import Tensor, nn

from ..models.config import CodiConfig
from .batching import positions_from_mask
from .loop import LatentLoopState, Masking

StepFn = Callable[[Any, int, list], None]


def plain_lm_model(codi, remote: bool | str | None = "local") -> TransformersModel:
    """A stock `TransformersModel` of a CodiModel's merged LM (what NDIF would host).

    For a real NDIF run (`remote=True` or a host URL) it names the deployed repo in
    `codi.ndif_repo_id` (CLI `--ndif-model`): NDIF only runs models it hosts. Otherwise it wraps
    the local module, which is what `remote="local"` and local sessions use.
    """
    session_model = getattr(codi, "session_model", None)
    if session_model is not None:  # base LM + LoRA interventions (models/lora_interventions.py)
        return session_model(remote)
    repo = getattr(codi, "ndif_repo_id", None)
    if remote and remote != "local":
        if not repo:
            raise ValueError("a remote NDIF run needs the hub id of the merged CODI LM deployed there: "
                             "set codi.ndif_repo_id (CLI --ndif-model), or run a reference checkpoint as its "
                             "hosted base + LoRA interventions (lora_mode='interventions', CLI --lora-mode)")
        # the client has the tokenizer: no hub look-up for it (a local --ndif-model dir has no pipeline hints)
        return TransformersModel(repo, tokenizer=codi.tokenizer, task="text-generation")
    return TransformersModel(codi._module, tokenizer=codi.tokenizer, task="text-generation")


def _register_for_remote() -> None:
    # This package is not installed on an NDIF server: ship its code by value.
    import nnsight_codi

    nnsight.register(nnsight_codi)


@contextmanager
def _detached(obj: Any, name: str, active: bool) -> Iterator[None]:
    """Take attribute `name` off `obj` (its `__dict__`) for the duration, when `active`."""
    value = obj.__dict__.pop(name, None) if active else None
    try:
        yield
    finally:
        if value is not None:
            obj.__dict__[name] = value


def run_latent_session(model: TransformersModel, prj: nn.Module, config: CodiConfig, prompts,
                       num_latents: int | None = None, max_new_tokens: int = 256,
                       masking: Masking = "exact", remote: bool | str | None = None,
                       step_fn: StepFn | None = None, output_attentions: bool = False) -> tuple[Tensor, list]:
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
    """
    if remote:
        _register_for_remote()
    state = LatentLoopState(
        input_ids=prompts.input_ids, attention_mask=prompts.attention_mask, config=config,
        num_latents=config.num_latents if num_latents is None else int(num_latents),
        max_new_tokens=max_new_tokens, masking=masking,
    )
    # A CODI checkpoint run as base LM + interventions (models/lora_interventions.py): its adapter is a
    # local of this session, so its tensors travel once per session; each call gets a second invoke.
    adapter = getattr(model, "codi_adapter", None)
    if adapter is not None:
        prj = adapter.project
    elif remote:  # by value (not as a reference to "model.prj", which the server's model lacks),
        from ..models.lora_interventions import PortableProjection, by_value

        prj = PortableProjection(by_value(prj))  # moved to the server model's device on first use
    project = prj if config.use_prj else None
    if remote:  # dataclasses and paths on plain twins: what NDIF's import whitelist accepts (tracing/portable.py)
        from .portable import portable

        state, step_fn, adapter, project = portable((state, step_fn, adapter, project))
    session_kwargs = {} if not remote else {"remote": remote}
    extra = {"output_attentions": True} if output_attentions else {}
    extra["logits_to_keep"] = 1  # the loop reads the last position's logits only
    # The model object travels with the request (its module by reference): its own `codi_adapter`
    # (a dataclass) must not ride along beside the portable copy the block uses.
    with _detached(model, "codi_adapter", bool(remote)):
        with model.session(**session_kwargs):
            sink = nnsight.save([])
            cache = None
            while not state.done:
                inputs = state.call_kwargs(project=project)
                if cache is not None:
                    inputs["past_key_values"] = cache
                elif "position_ids" not in inputs:  # reference masking: nnsight would count real tokens only
                    inputs["position_ids"] = positions_from_mask(torch.ones_like(inputs["input_ids"]))
                with model.trace(use_cache=True, output_hidden_states=True, **extra) as tracer:
                    if adapter is not None:  # its interventions in their own invoke, so hooks keep their forward order
                        with tracer.invoke(**adapter.feed(inputs)):
                            adapter.intervene(model, inputs)
                    with tracer.invoke(**({} if adapter is not None else inputs)):
                        if step_fn is not None:
                            step_fn(model, state.step, sink)
                        out = model.output
                        hidden = out.hidden_states[-1][:, -1:]
                        logits = out.logits[:, -1]
                        cache = out.past_key_values
                # On a GPU server the model's outputs are on its device while the state's tensors stay where
                # the request put them (CPU): greedy decoding runs beside the state.
                state.observe(hidden, logits.to(state.finished.device))
            tokens = nnsight.save(state.generated())
    return tokens, list(sink)
