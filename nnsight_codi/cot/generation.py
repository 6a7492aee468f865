"""Generation and residual-stream reads on a plain HF LM, with step hooks, through nnsight.

`generate_ids` runs `model.generate` in one nnsight trace and visits the step hooks at every
forward (step 0 = the prompt forward, step j = decode step j, each over the KV cache), using
the same `visit_step` walk as the CODI loop. `generate_forked` runs several hook sets that edit the
prompt forward alike (e.g. `single` and `continuous` steering at one layer and coef) from one prompt
forward, each continuing over its own copy of the KV cache (bit-identical to whole runs).
`position_means` re-reads prompt + generated ids in one forward and averages every layer's residual
stream over chosen positions, inside the trace (on NDIF only the means come back).

Example:
    >>> ids = [[5, 6, 7], [8, 9]]
    >>> truncate_at_stop([[3, 4, 1, 9], [2, 2, 2, 2]], stop_ids={1})
    [[3, 4, 1], [2, 2, 2, 2]]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import nnsight
import torch
from torch import Tensor

from ..models.kv_cache import cache_kwargs, output_cache
from ..tracing.batching import positions_from_mask
from ..tracing.hooks import visit_step
from ..tracing.loop import fork_cache
from ..tracing.plain_lm import PlainLM
from ..tracing.portable import portable
from ..tracing.remote import ndif_errors, remote_kwargs

if TYPE_CHECKING:
    from jaxtyping import Float
    from nnsight import TransformersModel


def truncate_at_stop(rows: Sequence[Sequence[int]], stop_ids: AbstractSet[int]) -> list[list[int]]:
    """Each row up to and including its first stop token."""
    out = []
    for row in rows:
        row = list(row)
        cut = next((i for i, t in enumerate(row) if t in stop_ids), None)
        out.append(row if cut is None else row[: cut + 1])
    return out


def generate_ids(model: TransformersModel, prompts: Sequence[Sequence[int]], hooks: Sequence[Any] = (),
                 max_new_tokens: int = 64, greedy: bool = True, seed: int = 0,
                 remote: Any = None) -> tuple[list[list[int]], list]:
    """Generate a continuation of every prompt (left-padded batch) with `hooks` at every forward.

    Args:
        prompts: token id lists (each already holds the chat template).
        hooks: step hooks (e.g. `Steering`), visited at step 0 (prompt) and every decode step.
        greedy: argmax decoding; else sampling with the model's generation config, seeded by `seed`.

    Returns:
        `(generated ids per prompt, truncated after the first stop token; hook records)`.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    lm = PlainLM.of(model)
    ids, mask = lm.pad(prompts)
    if not greedy:
        torch.manual_seed(seed)  # local runs; NDIF samples with the server's generator
    new, sink, _ = _generate(lm, ids, mask, hooks, max_new_tokens, greedy, remote)
    return truncate_at_stop(new.tolist(), lm.stop_ids), sink


def generate_forked(model: TransformersModel, prompts: Sequence[Sequence[int]], hook_sets: Sequence[Sequence[Any]],
                    max_new_tokens: int = 64) -> list[tuple[list[list[int]], list]]:
    """`generate_ids` (greedy, local) under several hook sets that make the *same* edits at step 0.

    The prompt forward and the first generated token are computed once: the first hook set runs
    whole (keeping its KV cache), and every other set continues from step 1 over a copy of that
    cache cut back to the prompt (`prompt_cache`), fed the same first token. E.g. `single` and
    `continuous` injection at one (layer, coef) steer the prompt forward alike and differ from the
    first decode step on. The caller vouches that the sets agree at step 0 (for `Steering`:
    `Steering.prompt_edit`); each set's hooks are visited at the steps they would see in a whole run
    (the continuation's forwards are steps 1, 2, ...). Answers and records equal `generate_ids` per
    set bit for bit: the continuation makes the same calls (one token over the cache) as a whole run.

    Returns one `(generated ids, records)` per hook set, as `generate_ids` returns them.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not hook_sets:
        return []
    lm = PlainLM.of(model)
    ids, mask = lm.pad(prompts)
    stops = lm.stop_ids
    first, sink, cache = _generate(lm, ids, mask, hook_sets[0], max_new_tokens, True, None, return_cache=True)
    out = [(truncate_at_stop(first.tolist(), stops), sink)]
    if len(hook_sets) == 1:
        return out
    token = first[:, :1].to(ids.device)
    if max_new_tokens == 1:
        rest = [(first, []) for _ in hook_sets[1:]]
    else:
        ids1, mask1 = torch.cat([ids, token], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        rest = []
        for hooks in hook_sets[1:]:
            new, records, _ = _generate(lm, ids1, mask1, hooks, max_new_tokens - 1, True, None,
                                        cache=prompt_cache(cache, ids.shape[1]), step_offset=1)
            rest.append((torch.cat([token.to(new.device), new], 1), records))
    return out + [(truncate_at_stop(new.tolist(), stops), records) for new, records in rest]


def prompt_cache(cache: Any, length: int) -> Any:
    """A branch's copy of a generation's KV cache cut back to its first `length` positions (the prompt).

    `fork_cache` makes a new container whose layers share the tensors; each layer is then cut by
    slicing (a view: nothing copied). A dynamic cache only ever concatenates, so the branch's first
    call makes new tensors and neither the source nor a sibling branch sees its writes. Only plain
    `DynamicLayer`s are cut (a sliding-window layer may already have dropped the prompt's start).
    """
    other = fork_cache(cache)
    for layer in other.layers:
        if type(layer).__name__ != "DynamicLayer":
            raise TypeError(f"cannot cut a {type(layer).__name__} back to the prompt: fork only dynamic caches")
        if layer.keys.shape[-2] < length:
            raise ValueError(f"the cache holds {layer.keys.shape[-2]} positions, fewer than the prompt's {length}")
        layer.keys, layer.values = layer.keys[..., :length, :], layer.values[..., :length, :]
    return other


def _generate(lm: PlainLM, ids: Tensor, mask: Tensor, hooks: Sequence[Any], max_new_tokens: int,
              greedy: bool, remote: Any, cache: Any = None, step_offset: int = 0, return_cache: bool = False
              ) -> tuple[Tensor, list, Any]:
    """One `model.generate` trace: `(new ids Long[Tensor, "batch new"] (untruncated), records, KV cache)`.

    With `cache` (holding every position of `ids` but the last), generation continues from it and the
    hooks see step `step_offset + i` at its i-th forward; hooks acting only at steps before
    `step_offset` are not visited. The cache is returned only with `return_cache` (else None).
    """
    model = lm.model
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    sample = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None} if greedy else {"do_sample": True}
    extra = dict(cache_kwargs(cache)) if cache is not None else {}
    if return_cache:
        extra["return_dict_in_generate"] = True
    hooks = list(hooks)
    if remote:  # dataclass hooks (`Steering` is an `AddVector`) on plain twins, as the latent loop sends them
        hooks = portable(hooks)
    layers = lm.num_layers  # a plain int inside the trace (a remote request ships what the body reads)
    every_step = any(list(h.sites(step_offset + 1)) for h in hooks)  # hooks that act after the first forward
    with warnings.catch_warnings(), ndif_errors(remote, lm.model_id):
        warnings.filterwarnings("ignore", message=".*was never reached.*")  # the open iter loop ends by design
        with model.generate(max_new_tokens=max_new_tokens, pad_token_id=lm.pad_id, **sample, **extra,
                            **remote_kwargs(remote)) as tracer:
            with tracer.invoke(input_ids=ids, attention_mask=mask):
                sink = nnsight.save([])
                if every_step:
                    for step in tracer.iter[:]:
                        visit_step(model, step + step_offset, hooks, sink, layers)
                elif hooks and step_offset == 0:  # prompt forward only (an iter loop touching no module would spin)
                    visit_step(model, 0, hooks, sink, layers)
            with tracer.invoke():
                result = tracer.result.save()
    if return_cache:
        return result.sequences[:, ids.shape[1]:], list(sink), output_cache(result)
    return result[:, ids.shape[1]:], list(sink), None


POSITION_SETS = ("generated", "all", "last_prompt")


class PositionMean:
    """Step hook: every layer's residual stream averaged over weighted positions (step 0 only).

    `weights`: `Float[Tensor, "batch seq"]` (1 at the positions to average, 0 elsewhere).
    Records `("mean", layer, Float[Tensor, "batch dim"])`.
    """

    def __init__(self, layers: Sequence[int], weights: Tensor) -> None:
        self.layers, self.weights = list(layers), weights

    def sites(self, step: int) -> list[str]:
        return [f"layer{l}" for l in self.layers] if step == 0 else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        w = self.weights.to(value.device, torch.float32)
        mean = (value.float() * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1e-9)
        sink.append(("mean", int(site[5:]), mean.detach().cpu()))


def position_means(model: TransformersModel, prompts: Sequence[Sequence[int]], generated: Sequence[Sequence[int]],
                   positions: str = "generated", remote: Any = None) -> Float[Tensor, "batch layer dim"]:
    """Mean residual stream of every layer over the generated, all, or the last prompt position(s).

    `positions`: `generated` (the paper's choice), `all` (prompt + generated), or `last_prompt`
    (the last prompt token alone, where the model decides how to answer: a contrastive
    activation-addition read). Returns `Float[Tensor, "batch layer dim"]` with layers 0..L
    (0 = embeddings, l = block l-1's output, pre final norm), read in one forward over
    `prompt + generated` (left-padded, with position ids counting real tokens, so batched equals
    one at a time).
    """
    if positions not in POSITION_SETS:
        raise ValueError(f"positions must be one of {', '.join(POSITION_SETS)}, got {positions!r}")
    lm = PlainLM.of(model)
    seqs = [list(p) + list(g) for p, g in zip(prompts, generated, strict=True)]
    ids, mask = lm.pad(seqs)
    weights = mask.float().clone()
    if positions == "generated":
        for row, g in enumerate(generated):
            weights[row, : ids.shape[1] - len(g)] = 0.0
    elif positions == "last_prompt":
        weights.zero_()
        for row, g in enumerate(generated):
            weights[row, ids.shape[1] - len(g) - 1] = 1.0
    layers = list(range(lm.num_layers + 1))
    hook = PositionMean(layers, weights)
    device = lm.device
    with ndif_errors(remote, lm.model_id):
        with model.trace(input_ids=ids.to(device), attention_mask=mask.to(device),
                         position_ids=positions_from_mask(mask).to(device), **remote_kwargs(remote)):
            sink = nnsight.save([])
            visit_step(model, 0, [hook], sink, layers[-1])
    by_layer = {layer: t for name, layer, t in sink if name == "mean"}
    return torch.stack([by_layer[l] for l in layers], dim=1).float()
