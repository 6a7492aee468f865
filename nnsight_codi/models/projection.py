"""The CODI latent projection `prj`: Dropout → Linear → GELU → Linear (→ LayerNorm).

Built as a plain `torch.nn.Sequential` with the reference's child names (`0`..`3`, `ln`), so
its state dict keys are the reference's `prj.1.weight`, `prj.3.bias`, `prj.ln.weight`, … and
it pickles by value for remote (NDIF) execution without shipping any class of this package.

Example:
    >>> prj = build_projection(hidden_size=8, prj_dim=16)
    >>> sorted(prj.state_dict())[:2]
    ['1.bias', '1.weight']
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .codi_config import CodiFormatError


def build_projection(hidden_size: int, prj_dim: int | None = None, layer_norm: bool = True,
                     dropout: float = 0.0) -> nn.Sequential:
    """A fresh projection `Float[Tensor, "... d"] -> Float[Tensor, "... d"]` (random init)."""
    prj_dim = prj_dim or hidden_size
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        [
            ("0", nn.Dropout(dropout)),
            ("1", nn.Linear(hidden_size, prj_dim)),
            ("2", nn.GELU()),
            ("3", nn.Linear(prj_dim, hidden_size)),
        ]
    )
    if layer_norm:
        layers["ln"] = nn.LayerNorm(hidden_size)
    return nn.Sequential(layers)


def projection_from_state_dict(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """Build a projection whose shapes match `state` (keys without the `prj.` prefix), load it strictly."""
    required = ["1.weight", "1.bias", "3.weight", "3.bias"]
    missing = [k for k in required if k not in state]
    if missing:
        raise CodiFormatError(f"projection weights missing: {['prj.' + k for k in missing]}")
    prj_dim, hidden = state["1.weight"].shape
    if tuple(state["3.weight"].shape) != (hidden, prj_dim):
        raise CodiFormatError(
            f"projection shape mismatch: prj.1.weight {tuple(state['1.weight'].shape)} "
            f"but prj.3.weight {tuple(state['3.weight'].shape)} (expected {(hidden, prj_dim)})"
        )
    prj = build_projection(hidden, prj_dim, layer_norm="ln.weight" in state)
    expected = set(prj.state_dict())
    unexpected = sorted(set(state) - expected)
    if unexpected:
        raise CodiFormatError(f"unexpected projection weights: {['prj.' + k for k in unexpected]}")
    for key, value in prj.state_dict().items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CodiFormatError(
                f"projection shape mismatch for prj.{key}: checkpoint {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)}"
            )
    prj.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return prj.eval()
