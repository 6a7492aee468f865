"""Patching hooks: replace a latent input, or a residual-stream state, with given values.

- `PatchLatent` replaces the vector z_k fed at latent step k (the `input` site): with a given
  vector, a random one with per-dimension statistics matched to real latents, the mean latent
  at that step over a reference set, or zero (`latent_patch_values` builds each).
- `PatchResidual` sets the residual stream at one (step, layer) to given values: activation
  patching from a clean run into a corrupted one.

Example:
    >>> stats = LatentStats(mean=torch.zeros(3, 4), std=torch.ones(3, 4))   # steps bot..latent2
    >>> latent_patch_values("zero", 1, stats, batch=2).shape
    torch.Size([2, 4])
    >>> PatchLatent(step=1, values=torch.zeros(4)).sites(1)
    ['input']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..steps import resolve_step
from .steering import check_layer, check_step, check_vector

if TYPE_CHECKING:
    from jaxtyping import Float

PATCH_KINDS = ("random", "mean", "zero")


@dataclass
class LatentStats:
    """Per-step, per-dimension mean and std of the latent inputs of a reference set.

    `mean`, `std`: `Float[Tensor, "step dim"]` over steps bot..eot (rows of non-latent steps unused).
    """

    mean: Float[Tensor, "step dim"]
    std: Float[Tensor, "step dim"]


def latent_patch_values(kind: str, step: int, stats: LatentStats | None, batch: int,
                        example_seeds: list[int] | None = None, seed: int = 0) -> Float[Tensor, "batch dim"]:
    """Replacement latents `Float[Tensor, "batch dim"]` for `kind` in random | mean | zero.

    `random` draws `randn × std + mean` per example with a generator seeded by `(seed, example_seeds[i])`,
    so a row's draw does not depend on how examples were batched.
    """
    if kind not in PATCH_KINDS:
        raise ValueError(f"unknown patch kind {kind!r}: use one of {', '.join(PATCH_KINDS)} or a vector file")
    if stats is None:
        raise ValueError(f"a {kind!r} patch needs latent statistics from a reference set")
    mean, std = stats.mean[step].float(), stats.std[step].float()
    if kind == "zero":
        return torch.zeros(batch, mean.shape[-1])
    if kind == "mean":
        return mean.expand(batch, -1).clone()
    ids = example_seeds if example_seeds is not None else list(range(batch))
    noise = np.stack([np.random.default_rng([int(seed), int(i), int(step)]).standard_normal(mean.shape[-1])
                      for i in ids]).astype(np.float32)
    return torch.from_numpy(noise) * std + mean


@dataclass
class PatchLatent:
    """Replace the latent input z_`step` (a `StepHook` on the `input` site of latent steps 1..K).

    Args:
        step: latent step k, 1..K (or its name `latentk`).
        values: `Float[Tensor, "dim"]` or `Float[Tensor, "batch dim"]`.
    """

    step: int
    values: Float[Tensor, "*batch dim"]
    label: str = "given"

    def __post_init__(self) -> None:
        self.step = resolve_step(self.step, None)

    def validate(self, num_layers: int, num_latents: int, hidden_size: int) -> None:
        check_step(self.step, num_latents, "latent patch", low=1, high=num_latents)
        self.values = check_vector(self.values, hidden_size, "latent patch")

    def sites(self, step: int) -> list[str]:
        return ["input"] if step == self.step else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        value[:, -1] = self.values.to(value.device, value.dtype)

    def describe(self) -> dict[str, Any]:
        return {"kind": "patch_latent", "step": self.step, "values": self.label}


@dataclass
class PatchResidual:
    """Set the residual stream at (`step`, `layer`), last position, to `values` (activation patching).

    Args:
        step: 0..K+1 (or `bot`, `latentk`); layer: 0..L (the store's convention).
        values: `Float[Tensor, "batch dim"]`, e.g. the clean run's states recorded by `Capture`.
    """

    step: int
    layer: int
    values: Float[Tensor, "batch dim"]

    def __post_init__(self) -> None:
        self.step = resolve_step(self.step, None)

    def validate(self, num_layers: int, num_latents: int, hidden_size: int) -> None:
        check_step(self.step, num_latents, "activation patch")
        check_layer(self.layer, num_layers, "activation patch")
        self.values = check_vector(self.values, hidden_size, "activation patch")

    def sites(self, step: int) -> list[str]:
        return [f"layer{self.layer}"] if step == self.step else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        value[:, -1] = self.values.to(value.device, value.dtype)

    def describe(self) -> dict[str, Any]:
        return {"kind": "patch_residual", "step": self.step, "layer": self.layer}
