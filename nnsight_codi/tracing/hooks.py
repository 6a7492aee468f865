"""Step hooks: capture and interventions as options of the one latent loop.

A hook names the **sites** it needs at each step and is handed each site's live value inside
the step's trace, where it may read it (append to the sink) or edit it in place. The runner
(`loop.run_loop`, `branches.run_branches`) visits sites in forward order (`visit_step`) — `input`
(the step's input embeddings), `layer0` … `layerL` (the residual stream: layer 0 = embedding
output = block 0's input, layer l = block l-1's output, pre final norm), `output` (the LM's
output object: logits, attentions, KV cache) — so any set of hooks composes without nnsight's
out-of-order errors. The sink is one `nnsight.save([])` list of `(name, step, tensor)` records,
so only what hooks record leaves the model on remote runs.

Example:
    >>> class LastLayerNorms:
    ...     def sites(self, step): return ["layer2"]
    ...     def visit(self, site, value, step, sink): sink.append(("norm", step, value[:, -1].norm(dim=-1)))
    >>> tokens, records = run_loop(codi, codi.encode(qs), [LastLayerNorms()])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

from ..models.architecture import transformer_blocks

if TYPE_CHECKING:
    from nnsight import TransformersModel

Record = tuple[str, int, Any]


if TYPE_CHECKING:
    class StepHook(Protocol):
        """What the runner needs of a hook."""

        def sites(self, step: int) -> Iterable[str]:
            """Sites this hook visits at `step` (`"input"`, `"layer{l}"`, `"output"`)."""
            ...

        def visit(self, site: str, value: Any, step: int, sink: list[Record]) -> None:
            """Read or edit `value` in place; append `(name, step, tensor)` records to `sink`."""
else:
    class StepHook:
        """What the runner needs of a hook: `sites(step)` and `visit(site, value, step, sink)`.

        A `typing.Protocol` for the type checker only. At run time a plain class: functions that name it
        travel to NDIF by value, and a Protocol subclass would carry the client interpreter's typing
        internals with it (Python 3.11's `typing._is_callable_members_only` does not exist in 3.12).
        """


def site_order(site: str) -> int:
    """Forward-order rank of a site: `input` first, then `layer<l>` by l, then `output`."""
    if site == "input":
        return -1
    if site == "output":
        return 1 << 30
    if site.startswith("layer") and site[5:].isdigit():
        return int(site[5:])
    raise ValueError(f"unknown site {site!r}: use 'input', 'layer<l>' or 'output'")


def block_list(model: TransformersModel) -> Any:
    """The envoy list of transformer blocks (`transformer.h` for GPT-2, `model.layers` for Llama-likes)."""
    return transformer_blocks(model)


def _unwrap(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def visit_step(model: TransformersModel, step: int, hooks: Sequence[StepHook], sink: list[Record],
               num_layers: int) -> None:
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

