"""The CODI forward passes and losses (one shared model as teacher and student).

Student: the left-padded prompt `q + bot` (attention mask, position ids counting real tokens
only), then K latent calls feeding `z_k = prj(h_last)` through `inputs_embeds` with the KV
cache (gradients flow through the whole chain), then the decoder call on `eot + ans`
(teacher forcing). Teacher: `q + cot + ans`, right-padded. Losses (codi.md §3):

    L = α·CE_teacher(cot + ans) + β·CE_student(ans | eot) + γ·KD
    KD = mean over hidden_states l of  SmoothL1(s_l, sg(t_l)) / std(t_l)

where `s_l`, `t_l`: `Float[Tensor, "batch dim"]` are layer l's hidden states at the token
before the answer number (student decoder / teacher), `hidden_states` includes the embedding
output and the final-norm output (L+1 entries), and std is one scalar over batch×dim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.kv_cache import cache_kwargs, output_cache
from ..tracing.batching import extend_mask, next_positions, positions_from_mask
from .encode import Batch

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def final_norm(model: nn.Module) -> nn.Module:
    """The final normalisation before the unembedding (GPT-2 `ln_f`, Llama `norm`)."""
    for path in ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm", "model.final_layernorm"):
        obj: object = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj  # type: ignore[return-value]
    raise ValueError(f"cannot find the final norm of {type(model).__name__}")


@dataclass
class LatentRun:
    """State after the prompt and K latent calls.

    Attributes:
        cache: the KV cache (covers prompt + K latents).
        mask: `Long[Tensor, "batch p+K"]` running attention mask.
        z: `Float[Tensor, "batch 1 dim"]` the next latent input (prj of the last hidden state).
        hidden: per step (0 = the prompt's bot position, k = latent k) the tuple of all
            hidden states at that position, each `Float[Tensor, "batch dim"]` (only if kept).
    """

    cache: object
    mask: Tensor
    z: Tensor
    hidden: list[tuple[Tensor, ...]]


def run_latents(model: PreTrainedModel, prj: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor,
                num_latents: int, keep_hidden: bool = False) -> LatentRun:
    """Prompt call then `num_latents` latent calls (the inference loop's convention).

    Args:
        prompt_ids, prompt_mask: `Long[Tensor, "batch p"]`, left-padded, ending in bot.
        num_latents: K ≥ 0.
        keep_hidden: keep every step's hidden states at the new position (for the logit lens).
    """
    positions = positions_from_mask(prompt_mask)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                use_cache=True, output_hidden_states=True)
    return continue_latents(model, prj, out, prompt_mask, num_latents, keep_hidden)


def continue_latents(model: PreTrainedModel, prj: nn.Module, out, mask: Tensor, num_latents: int,
                     keep_hidden: bool = False) -> LatentRun:
    """The K latent calls after a call `out` whose last position is bot; `mask` covers the cache."""
    hidden = [tuple(h[:, -1] for h in out.hidden_states)] if keep_hidden else []
    z = prj(out.hidden_states[-1][:, -1:])
    cache = output_cache(out)
    for _ in range(num_latents):
        pos = next_positions(mask)
        mask = extend_mask(mask)
        out = model(inputs_embeds=z, attention_mask=mask, position_ids=pos, **cache_kwargs(cache),
                    use_cache=True, output_hidden_states=True)
        cache = output_cache(out)
        if keep_hidden:
            hidden.append(tuple(h[:, -1] for h in out.hidden_states))
        z = prj(out.hidden_states[-1][:, -1:])
    return LatentRun(cache, mask, z, hidden)


def _gather(hidden_states: Sequence[Tensor], positions: Tensor) -> list[Tensor]:
    rows = torch.arange(positions.shape[0], device=positions.device)
    return [h[rows, positions] for h in hidden_states]


def distillation_loss(student: Sequence[Tensor], teacher: Sequence[Tensor], kind: str = "smooth_l1",
                      div_std: bool = True) -> Tensor:
    """Mean over layers of `loss(s_l, sg(t_l)) / std(t_l)`; each entry `Float[Tensor, "batch dim"]`.

    `kind`: "smooth_l1" (reference default), "l1", or "l2" (MSE; divided by std twice as in the
    reference). The std is one scalar per layer over batch×dim (unbiased, `Tensor.std()`).
    """
    if len(student) != len(teacher) or not student:
        raise ValueError(f"need the same non-zero number of layers, got {len(student)} and {len(teacher)}")
    fn = {"smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss, "l2": F.mse_loss}[kind]
    losses = []
    for s, t in zip(student, teacher):
        t = t.detach()
        loss = fn(s, t)
        if div_std:
            std = t.std()
            loss = loss / std / (std if kind == "l2" else 1.0)
        losses.append(loss)
    return torch.stack(losses).mean()


def teacher_pass(model: PreTrainedModel, batch: Batch, use_cache: bool = False):
    """Teacher CE over CoT + answer and the hidden states at the distilled token.

    Returns `(ce, [Float[Tensor, "batch dim"]] * (L+1), cache or None)`.
    """
    out = model(input_ids=batch.teacher_ids, attention_mask=batch.teacher_mask,
                position_ids=positions_from_mask(batch.teacher_mask), use_cache=use_cache,
                output_hidden_states=True)
    ce = F.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), batch.teacher_labels[:, 1:].flatten(),
                         ignore_index=-100)
    return ce, _gather(out.hidden_states, batch.teacher_distill), (output_cache(out) if use_cache else None)


def student_latents_from_teacher(model: PreTrainedModel, prj: nn.Module, batch: Batch, cache, num_latents: int) -> LatentRun:
    """Student prompt reusing the teacher's question encoding: crop the teacher's KV cache to the
    question block, then one call on the prompt suffix ((eos,) bot), then the K latents.
    """
    cache.crop(-(batch.teacher_ids.shape[1] - batch.question_width))
    q_mask = batch.teacher_mask[:, : batch.question_width]
    n = batch.student_suffix.shape[1]
    out = model(input_ids=batch.student_suffix, attention_mask=extend_mask(q_mask, n),
                position_ids=next_positions(q_mask, n), **cache_kwargs(cache), use_cache=True,
                output_hidden_states=True)
    return continue_latents(model, prj, out, extend_mask(q_mask, n), num_latents)


def student_pass(model: PreTrainedModel, prj: nn.Module, batch: Batch, num_latents: int, pad_id: int,
                 run: LatentRun | None = None) -> tuple[Tensor, list[Tensor]]:
    """Student CE on the answer after eot (teacher forcing) and its hidden states at the distilled token.

    `run`: the latent run to continue (default: a fresh `run_latents` on the batch's prompt).
    """
    if run is None:
        run = run_latents(model, prj, batch.prompt_ids, batch.prompt_mask, num_latents)
    dec_ids = batch.decoder_ids
    embeds = model.get_input_embeddings()(dec_ids.masked_fill(batch.decoder_labels == -100, pad_id))
    pos = next_positions(run.mask, dec_ids.shape[1])
    mask = extend_mask(run.mask, dec_ids.shape[1])
    out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, **cache_kwargs(run.cache),
                use_cache=True, output_hidden_states=True)
    ce = F.cross_entropy(out.logits[:, :-1].flatten(0, 1).float(), batch.decoder_labels[:, 1:].flatten(),
                         ignore_index=-100)
    return ce, _gather(out.hidden_states, batch.student_distill)


def codi_losses(model: PreTrainedModel, prj: nn.Module, batch: Batch, *, num_latents: int, pad_id: int,
                teacher_weight: float = 1.0, student_weight: float = 1.0, distill_weight: float = 1.0,
                distill_loss: str = "smooth_l1", div_std: bool = True,
                teacher_only: bool = False, shared_prompt: bool = True) -> dict[str, Tensor]:
    """All CODI losses of one batch: `{"loss", "teacher", "student", "distill"}` (scalars).

    The teacher's hidden states are computed in the same (grad-enabled) pass as its CE and
    detached for the distillation target; without dropout this equals the reference's separate
    `no_grad` pass. With `shared_prompt` the student's question encoding is the teacher's
    (identical values, since both see the same tokens at the same positions under a causal
    mask; gradients add up the same way), which saves one forward/backward over the question.
    """
    t_ce, t_hidden, cache = teacher_pass(model, batch, use_cache=shared_prompt and not teacher_only)
    zero = t_ce.new_zeros(())
    if teacher_only:
        return {"loss": teacher_weight * t_ce, "teacher": t_ce, "student": zero, "distill": zero}
    run = student_latents_from_teacher(model, prj, batch, cache, num_latents) if shared_prompt else None
    s_ce, s_hidden = student_pass(model, prj, batch, num_latents, pad_id, run=run)
    kd = distillation_loss(s_hidden, t_hidden, distill_loss, div_std)
    loss = teacher_weight * t_ce + student_weight * s_ce + distill_weight * kd
    return {"loss": loss, "teacher": t_ce, "student": s_ce, "distill": kd}
