"""The logit lens: `unembed(final_norm(h))` on a pre-norm residual-stream state.

Layers follow the store's convention (0 = embedding output, L = last block output, pre final
norm), so the lens applies the final norm to every layer, the last included; the lens of layer
L reproduces the model's own logits (tested).

Example:
    >>> logits = logit_lens(codi, hidden)                 # doctest: +SKIP   [..., dim] -> [..., vocab]
    >>> ids, probs = top_tokens(logits, k=5)              # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _module(model) -> nn.Module:
    return getattr(model, "_module", model)


def final_norm(model) -> nn.Module:
    """The final norm of a HF causal LM (GPT-2 `transformer.ln_f`, Llama-likes `model.norm`)."""
    lm = _module(model)
    for path in ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm"):
        obj = lm
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise ValueError(f"cannot find the final norm of {type(lm).__name__}")


@torch.inference_mode()
def logit_lens(model, hidden: Tensor) -> Tensor:
    """`Float[Tensor, "... dim"]` pre-norm hidden states → `Float[Tensor, "... vocab"]` logits."""
    lm = _module(model)
    weight = next(lm.parameters())
    h = torch.as_tensor(hidden).to(weight.device, weight.dtype)
    return lm.get_output_embeddings()(final_norm(lm)(h)).float()


def top_tokens(logits: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """Top-k token ids and probabilities along the last dim."""
    probs = logits.float().softmax(-1)
    top = probs.topk(k, dim=-1)
    return top.indices, top.values
