"""The logit lens: `unembed(final_norm(h))` on a pre-norm residual-stream state.

Layers follow the store's convention (0 = embedding output, L = last block output, pre final
norm), so the lens applies the final norm to every layer, the last included; the lens of layer
L reproduces the model's own logits (tested).

Example:
    >>> from nnsight_codi import load_model
    >>> codi = load_model("tiny")                         # the bundled tiny CODI model
    >>> hidden = torch.zeros(2, 3, codi.hidden_size)
    >>> logit_lens(codi, hidden).shape                    # [..., dim] -> [..., vocab]
    torch.Size([2, 3, 1120])
    >>> ids, probs = top_tokens(logit_lens(codi, hidden), k=5)
    >>> ids.shape, probs.shape
    (torch.Size([2, 3, 5]), torch.Size([2, 3, 5]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from ..models.architecture import final_norm as _final_norm

if TYPE_CHECKING:
    from jaxtyping import Float, Int
    from transformers import PreTrainedModel

    from ..tracing.codi_model import CodiModel


def _module(model: CodiModel | PreTrainedModel) -> PreTrainedModel:
    """The HF causal LM under a CODI model (`model._module`), or `model` itself if it is one."""
    return cast("PreTrainedModel", getattr(model, "_module", model))


def unembedding(lm: PreTrainedModel) -> nn.Linear:
    """The output embedding (W_U) of a HF causal LM."""
    head = lm.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(lm).__name__} has no output embedding")
    return cast(nn.Linear, head)


def final_norm(model: CodiModel | PreTrainedModel) -> nn.Module:
    """The final norm of a HF causal LM (GPT-2 `transformer.ln_f`, Llama-likes `model.norm`)."""
    return _final_norm(_module(model))


@torch.inference_mode()
def logit_lens(model: CodiModel | PreTrainedModel, hidden: Float[Tensor, "*batch dim"]
               ) -> Float[Tensor, "*batch vocab"]:
    """`Float[Tensor, "... dim"]` pre-norm hidden states → `Float[Tensor, "... vocab"]` logits."""
    lm = _module(model)
    weight = next(lm.parameters())
    h = torch.as_tensor(hidden).to(weight.device, weight.dtype)
    return unembedding(lm)(final_norm(lm)(h)).float()


def top_tokens(logits: Float[Tensor, "*batch vocab"], k: int = 5
               ) -> tuple[Int[Tensor, "*batch k"], Float[Tensor, "*batch k"]]:
    """Top-k token ids and probabilities along the last dim."""
    probs = logits.float().softmax(-1)
    top = probs.topk(k, dim=-1)
    return top.indices, top.values
