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

Example:
    >>> class LastLayerNorms:
    ...     def sites(self, step): return ["layer2"]
    ...     def visit(self, site, value, step, sink): sink.append(("norm", step, value[:, -1].norm(dim=-1)))
    >>> tokens, records = run_loop(codi, codi.encode(qs), [LastLayerNorms()])   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import nnsight
import torch
from torch import Tensor

from ..models.architecture import transformer_blocks
from .loop import Masking

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
