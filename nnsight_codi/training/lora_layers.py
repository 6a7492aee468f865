"""A minimal LoRA (no peft dependency) for GPT-2 (`Conv1D`) and Llama-style (`nn.Linear`) models.

`apply_lora` freezes the base model and wraps the target projections with
`y = base(x) + (alpha / r) · B(A(x))` (A: Kaiming-uniform init, B: zeros, so training starts
at the base model). `merge_lora` folds the adapters back into plain weights, giving a standard
HF model for `save_converted`. As in the reference, the embeddings (including the new
pad/bot/eot rows) stay frozen; the projection `prj` is trained separately.
"""

from __future__ import annotations

import math
from typing import TypeVar, cast

import torch
from torch import Tensor, nn

GPT2_TARGETS = ("c_attn", "c_proj", "c_fc")
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _dims(module: nn.Module) -> tuple[int, int, bool]:
    """`(in_features, out_features, transposed)`; GPT-2's Conv1D stores weight as (in, out)."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if type(module).__name__ == "Conv1D":
        w = cast(Tensor, module.weight)
        return w.shape[0], w.shape[1], True
    raise TypeError(f"LoRA supports nn.Linear and Conv1D, not {type(module).__name__}")


class LoraLinear(nn.Module):
    """`base(x) + scale · x Aᵀ Bᵀ` for `x: Float[Tensor, "... in"]` → `Float[Tensor, "... out"]`."""

    def __init__(self, base: nn.Module, r: int, alpha: float) -> None:
        super().__init__()
        d_in, d_out, self.transposed = _dims(base)
        self.base = base
        self.lora_a = nn.Parameter(torch.empty(r, d_in, dtype=torch.float32))
        self.lora_b = nn.Parameter(torch.zeros(d_out, r, dtype=torch.float32))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / r

    def forward(self, x: Tensor) -> Tensor:
        delta = (x.to(self.lora_a.dtype) @ self.lora_a.T @ self.lora_b.T) * self.scale
        return self.base(x) + delta.to(x.dtype)

    def merged(self) -> nn.Module:
        """The base module with the adapter folded into its weight."""
        delta = (self.lora_b @ self.lora_a) * self.scale  # out × in
        with torch.no_grad():
            w = cast(Tensor, self.base.weight)
            w += (delta.T if self.transposed else delta).to(w.dtype)
        return self.base


def apply_lora(model: nn.Module, r: int, alpha: float = 16.0, targets: tuple[str, ...] | None = None,
               seed: int = 0, train_token_ids: list[int] | None = None) -> int:
    """Freeze `model` and wrap target projections with LoRA; returns the number wrapped.

    `targets` defaults to the GPT-2 or Llama names. `train_token_ids` is accepted for API
    symmetry and ignored (embeddings stay frozen, as in the reference).
    """
    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    targets = targets or (GPT2_TARGETS + LLAMA_TARGETS)
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed + 2)
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and not isinstance(child, LoraLinear):
                setattr(module, child_name, LoraLinear(child, r, alpha))
                replaced += 1
    if replaced == 0:
        raise ValueError(f"no LoRA target modules {targets} found in {type(model).__name__}")
    return replaced


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def merge_lora(model: ModuleT) -> ModuleT:
    """Fold every `LoraLinear` back into its base module (in place); returns `model`."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoraLinear):
                setattr(module, child_name, child.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return model
