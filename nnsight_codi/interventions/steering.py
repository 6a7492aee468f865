"""Steering hooks: add a vector to the residual stream, or a difference to the KV cache.

Both are `StepHook`s of the one latent loop (`tracing.loop.run_loop`), so they compose with each
other, with the patching hooks and with `Capture` in one run.

Example:
    >>> hook = AddVector(torch.ones(4), layer=2, steps=[3], coef=0.5)
    >>> hook.sites(3), hook.sites(2)
    (['layer2'], [])
    >>> KVSteer(torch.zeros(2, 1, 3), torch.zeros(2, 1, 3), num_latents=3, positions="last").sites(3)
    ['output']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..models.kv_cache import cache_part, served_cache
from ..steps import resolve_step

if TYPE_CHECKING:
    from jaxtyping import Bool, Float

KV_POSITIONS = ("latents", "last", "all")  # and "latent<k>": the cache entry of latent k alone


def check_vector(vector: Tensor, size: int, what: str) -> Tensor:
    """`vector` as a float tensor whose last dim is `size`, with no NaN/inf (else `ValueError`)."""
    vector = torch.as_tensor(vector)
    if not vector.is_floating_point():
        vector = vector.float()
    if vector.dim() == 0 or vector.shape[-1] != size:
        raise ValueError(f"{what}: expected a vector of dimension {size}, got shape {tuple(vector.shape)}")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{what}: the vector contains NaN or inf")
    return vector


def check_step(step: int, num_latents: int, what: str, low: int = 0, high: int | None = None) -> int:
    """A step index in `low..high` (default 0..K+1, bot..eot), else `ValueError`."""
    high = num_latents + 1 if high is None else high
    if isinstance(step, bool) or not isinstance(step, int) or not low <= step <= high:
        raise ValueError(f"{what}: step {step!r} out of range {low}..{high} (0 = bot, 1..{num_latents} = latents, "
                         f"{num_latents + 1} = eot)")
    return step


def check_layer(layer: int, num_layers: int, what: str) -> int:
    """A residual-stream layer 0..L (0 = embedding output, l = block l-1's output), else `ValueError`."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= num_layers:
        raise ValueError(f"{what}: layer {layer!r} out of range 0..{num_layers}")
    return layer


def _rows(delta: Tensor, value: Tensor) -> Tensor:
    """A `[dim]` or `[batch, dim]` tensor on `value`'s device and dtype."""
    return delta.to(value.device, value.dtype)


@dataclass(eq=False)  # a hook is itself: compared and hashed by identity, never by its tensors
class AddVector:
    """Add `coef × vector` to the residual stream at `layer` on each of `steps` (a `StepHook`).

    The one hidden-state steering hook: the latent loop's steering (`steer`, sweeps, conditions) and
    the CoT vectors' steering of a plain LM's generation (`cot.steering.Steering`, a configuration
    of it) are both this class.

    Which positions of a steered forward are edited: `positions="last"` (the position being
    computed, the default) or `"all"` (every position of the forward). The prompt forward (step 0)
    may differ: `all_positions=True` edits all its positions, `prompt_mask` (a `Bool[Tensor,
    "batch seq"]`) only the masked ones.

    Args:
        vector: `Float[Tensor, "dim"]`, or `Float[Tensor, "batch dim"]` (one per example).
        layer: residual-stream layer 0..L (0 = embedding output, l = output of block l-1).
        steps: steps 0..K+1 (0 = bot, k = latent k, K+1 = eot), or the names `bot`, `latentk`;
            None: every step (every forward of a generation).
        coef: the coefficient (0 leaves the run bit-identical).
        record: append `("steered", step, n_positions)` to the sink at each edit (to count edits).
    """

    vector: Float[Tensor, "*batch dim"]
    layer: int
    steps: Sequence[int] | None
    coef: float = 1.0
    all_positions: bool = False
    positions: str = "last"
    prompt_mask: Bool[Tensor, "batch seq"] | None = None
    record: bool = False

    def __post_init__(self) -> None:
        if self.steps is not None:
            self.steps = tuple(resolve_step(s, None) for s in self.steps)
        self.coef = float(self.coef)
        if self.positions not in ("last", "all"):
            raise ValueError(f"steering positions must be 'last' or 'all', got {self.positions!r}")

    def validate(self, num_layers: int, num_latents: int, hidden_size: int) -> None:
        self.vector = check_vector(self.vector, hidden_size, "steering vector")
        check_layer(self.layer, num_layers, "steering")
        for s in self.steps or ():
            check_step(s, num_latents, "steering")

    def sites(self, step: int) -> list[str]:
        return [f"layer{self.layer}"] if self.steps is None or step in self.steps else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        delta = _rows(self.coef * self.vector, value)
        if step == 0 and self.prompt_mask is not None:
            value[:] += self.prompt_mask.to(value.device)[..., None].to(value.dtype) * delta
        elif (step == 0 and self.all_positions) or self.positions == "all":
            value[:] += delta[:, None] if delta.dim() == 2 else delta
        else:
            value[:, -1] += delta
        if self.record:
            sink.append(("steered", step, value.shape[1]))

    def describe(self) -> dict[str, Any]:
        return {"kind": "add_vector", "layer": self.layer, "steps": None if self.steps is None else list(self.steps),
                "coef": self.coef, "all_positions": self.all_positions,
                "vector_norm": float(self.vector.float().norm(dim=-1).mean())}


def latent_position(positions: str) -> int | None:
    """K of a `latent<k>` position set (the cache entry of latent k alone), else None."""
    if isinstance(positions, str) and positions.startswith("latent") and positions[6:].isdigit():
        return int(positions[6:])
    return None


def check_kv_positions(positions: str, num_latents: int | None = None) -> str:
    """A KV position set (`latents`, `last`, `all` or `latent<k>` with 1 <= k <= K), else `ValueError`."""
    k = latent_position(positions)
    if positions not in KV_POSITIONS and k is None:
        raise ValueError(f"unknown KV position set {positions!r}: use one of {', '.join(KV_POSITIONS)} "
                         "or latent<k> (the cache entry of latent k alone)")
    if k is not None and num_latents is not None and not 1 <= k <= num_latents:
        raise ValueError(f"KV steering at {positions}: latent {k} out of range 1..{num_latents}")
    return positions


def kv_positions(positions: str, num_latents: int) -> slice:
    """Cache positions (a slice of the sequence dim, counted from the end) that KV steering edits.

    Example:
        >>> kv_positions("latents", 6), kv_positions("latent1", 6), kv_positions("latent6", 6)
        (slice(-6, None, None), slice(-6, -5, None), slice(-1, None, None))
    """
    check_kv_positions(positions, num_latents)
    k = latent_position(positions)
    if k is not None:  # latent k sits num_latents - k + 1 entries from the end of the cache after the last latent
        start = k - num_latents - 1
        return slice(start, start + 1 if start + 1 < 0 else None)
    if positions == "latents":
        if num_latents < 1:
            raise ValueError("KV steering at the latent positions needs num_latents >= 1")
        return slice(-num_latents, None)
    return slice(-1, None) if positions == "last" else slice(None)


@dataclass(eq=False)  # likewise
class KVSteer:
    """Add `coef_k × keys` and `coef_v × values` to the KV cache after the last latent, before eot.

    It edits the live cache at the `output` site of step K (so eot and every answer token read the
    steered cache; the latents themselves were computed before the edit).

    Args:
        keys, values: `Float[Tensor, "block head head_dim"]` (block = 0..L-1, the cache of block b),
            or with a leading batch dim (one per example).
        num_latents: K of the run.
        coef_k, coef_v: separate coefficients of the key and value differences.
        blocks: which blocks' caches to edit (default all).
        positions: `latents` (the K latent positions, default), `last` (the last latent only),
            `latent<k>` (latent k's entry alone: the KV twin of hidden steering at latent k) or
            `all` (every cached position, the prompt included).
    """

    keys: Float[Tensor, "*batch block head head_dim"]
    values: Float[Tensor, "*batch block head head_dim"]
    num_latents: int
    coef_k: float = 1.0
    coef_v: float = 1.0
    blocks: Sequence[int] | None = None
    positions: str = "latents"

    def __post_init__(self) -> None:
        self.coef_k, self.coef_v = float(self.coef_k), float(self.coef_v)
        self.slice = kv_positions(self.positions, self.num_latents)

    def validate(self, num_blocks: int, heads: int, head_dim: int) -> None:
        for name in ("keys", "values"):
            t = check_vector(getattr(self, name), head_dim, f"KV steering {name}")
            if tuple(t.shape[-3:]) != (num_blocks, heads, head_dim) or t.dim() not in (3, 4):
                raise ValueError(f"KV steering {name}: expected shape (block={num_blocks}, head={heads}, "
                                 f"head_dim={head_dim}), got {tuple(t.shape)}")
            setattr(self, name, t)
        self.blocks = tuple(range(num_blocks)) if self.blocks is None else tuple(int(b) for b in self.blocks)
        bad = [b for b in self.blocks if not 0 <= b < num_blocks]
        if bad or not self.blocks:
            raise ValueError(f"KV steering: block(s) {bad or '[]'} out of range 0..{num_blocks - 1}")

    def sites(self, step: int) -> list[str]:
        return ["output"] if step == self.num_latents else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        cache = served_cache(value)  # the output's own name: on NDIF, the server's transformers
        blocks = self.blocks if self.blocks is not None else range(self.keys.shape[-3])
        for part, delta, coef in (("keys", self.keys, self.coef_k), ("values", self.values, self.coef_v)):
            if coef == 0.0:
                continue
            for b in blocks:
                target = cache_part(cache, b, part)                    # [batch, head, seq, head_dim]
                d = (coef * delta[..., b, :, :]).to(target.device, target.dtype)  # [(batch,) head, head_dim]
                target[:, :, self.slice] += d[..., :, None, :] if d.dim() == 3 else d[:, None, :]

    def describe(self) -> dict[str, Any]:
        return {"kind": "kv_steer", "coef_k": self.coef_k, "coef_v": self.coef_v,
                "blocks": list(self.blocks) if self.blocks is not None else None, "positions": self.positions}
