"""`Capture`: the step hook that records activations for the store (`nnsight_codi.store.schema`).

Variables (names as in `nnsight_codi.store.schema`):
- `hidden`: residual stream at the last position of each step (bot, latents, eot), for the
  chosen layers (0 = embedding output, L = last block output, pre final norm);
- `latent_input`: the vector fed at each latent step (NaN at bot and eot);
- `attention`: each step's query attention over all earlier positions, averaged over all layers
  and heads (needs eager attention; padding gets zero weight and is dropped by left-aligning);
- `attention_layers` / `attention_heads`: the same per block (averaged over heads) / per block
  and head (`capture --attention-detail layer|head`);
- `kv`: the KV cache after the last latent step (the end of the latent phase), per captured
  layer l ≥ 1 (the cache of block l-1).

For a plain LM (no latent loop) pass `positions` (counted from the end of the prompt, -1 = last
token): one forward pass is captured and its chosen positions become the `step` dimension.

`assemble` turns the hook's records into numpy arrays of the store's shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..models.kv_cache import cache_part, served_cache
from .hooks import Record

if TYPE_CHECKING:
    from jaxtyping import Int

CAPTURABLE = ("hidden", "latent_input", "attention", "attention_layers", "attention_heads", "kv")
ATTENTION_VARIABLES = ("attention", "attention_layers", "attention_heads")


@dataclass
class Capture:
    """Record `variables` at steps 0..K+1 (a `StepHook`).

    Args:
        variables: any of `hidden`, `latent_input`, `attention`, `kv`.
        layers: residual-stream layers 0..L to record for `hidden` and `kv`.
        num_latents: K (0 for a plain LM).
        positions: plain-LM mode: prompt positions from the end (e.g. `(-3, -2, -1)`) that form
            the step dimension of one forward pass.
    """

    variables: Sequence[str]
    layers: Sequence[int]
    num_latents: int
    positions: Sequence[int] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.variables) - set(CAPTURABLE))
        if unknown:
            raise ValueError(f"Capture: unknown variable(s) {unknown}; capturable: {list(CAPTURABLE)}")
        self.variables = tuple(self.variables)
        self.layers = tuple(sorted(set(int(l) for l in self.layers)))
        if self.positions is not None:
            self.positions = tuple(int(p) for p in self.positions)
            if not self.positions or any(p >= 0 for p in self.positions):
                raise ValueError(f"positions must be negative (counted from the prompt's end), got {self.positions}")
            if "latent_input" in self.variables:
                raise ValueError("latent_input exists only for CODI models (a plain LM has no latent steps)")

    @property
    def num_steps(self) -> int:
        return len(self.positions) if self.positions is not None else self.num_latents + 2

    @property
    def kv_step(self) -> int:
        return 0 if self.positions is not None else self.num_latents

    def _index(self) -> Any:
        return list(self.positions) if self.positions is not None else -1

    @property
    def needs_attentions(self) -> bool:
        return bool(set(ATTENTION_VARIABLES) & set(self.variables))

    def sites(self, step: int) -> list[str]:
        sites = []
        if "latent_input" in self.variables and 1 <= step <= self.num_latents:
            sites.append("input")
        if "hidden" in self.variables:
            sites += [f"layer{l}" for l in self.layers]
        if self.needs_attentions or ("kv" in self.variables and step == self.kv_step):
            sites.append("output")
        return sites if (self.positions is None or step == 0) else []

    def visit(self, site: str, value: Any, step: int, sink: list[Record]) -> None:
        if site == "input":
            sink.append(("latent_input", step, value[:, -1].detach().clone()))
        elif site.startswith("layer"):
            sink.append((f"hidden/{site[5:]}", step, value[:, self._index()].detach().clone()))
        else:
            if self.needs_attentions:
                if value.attentions is None:
                    raise RuntimeError("attention capture needs output_attentions and eager attention")
                # per block [batch, head, query, key] → the step's query rows
                heads = torch.stack([a[:, :, self._index()].float() for a in value.attentions], 1)
                if self.positions is not None:  # [batch, block, head, pos, key] → pos second
                    heads = heads.permute(0, 3, 1, 2, 4)
                per_block = heads.mean(-2)  # mean over heads: [batch, (pos,) block, key]
                if "attention" in self.variables:  # then over blocks
                    sink.append(("attention", step, per_block.mean(-2).detach().clone()))
                if "attention_layers" in self.variables:
                    sink.append(("attention_layers", step, per_block.detach().clone()))
                if "attention_heads" in self.variables:
                    sink.append(("attention_heads", step, heads.detach().clone()))
            if "kv" in self.variables and step == self.kv_step:
                cache = served_cache(value)  # the output's own name: on NDIF, the server's transformers
                blocks = [l for l in self.layers if l >= 1]
                kv = torch.stack([torch.stack([cache_part(cache, l - 1, "keys"),
                                               cache_part(cache, l - 1, "values")], 1) for l in blocks], 1)
                sink.append(("kv", step, kv.detach().clone()))  # [batch, layer, 2, head, seq, head_dim]


def assemble(records: Sequence[Record], capture: Capture, attention_mask: Int[Tensor, "batch seq"],
             position_width: int, hidden_size: int) -> dict[str, np.ndarray]:
    """Records → arrays: `hidden [b, step, layer, dim]`, `latent_input [b, step, dim]`,
    `attention [b, step, position]`, `kv [b, layer≥1, 2, head, position, head_dim]` (positions
    left-aligned: position 0 is the first prompt token of each example).
    """
    from ..store.positions import left_align, pad_counts_from_mask

    steps = capture.num_steps
    batch = attention_mask.shape[0]
    pads = pad_counts_from_mask(attention_mask)
    by_name: dict[str, dict[int, Tensor]] = {}
    for name, step, tensor in records:
        tensor = tensor.detach().to("cpu", torch.float32)
        if capture.positions is not None and name != "kv":  # [batch, position, ...] → one step each
            for s in range(steps):
                by_name.setdefault(name, {})[s] = tensor[:, s]
        else:
            by_name.setdefault(name, {})[step] = tensor
    out: dict[str, np.ndarray] = {}
    if "hidden" in capture.variables:
        out["hidden"] = np.stack([
            np.stack([by_name[f"hidden/{l}"][s].numpy() for l in capture.layers], axis=1) for s in range(steps)
        ], axis=1)
    if "latent_input" in capture.variables:
        arr = np.full((batch, steps, hidden_size), np.nan, dtype=np.float32)
        for s, t in by_name.get("latent_input", {}).items():
            arr[:, s] = t.numpy()
        out["latent_input"] = arr
    for name in ATTENTION_VARIABLES:
        if name not in capture.variables:
            continue
        first = by_name[name][0]
        arr = np.full((batch, steps, *first.shape[1:-1], position_width), np.nan, dtype=np.float32)
        for s in range(steps):
            row = left_align(by_name[name][s], pads, axis=-1)
            arr[:, s, ..., : min(row.shape[-1], position_width)] = row[..., :position_width]
        out[name] = arr
    if "kv" in capture.variables:
        kv = left_align(by_name["kv"][capture.kv_step], pads, axis=-2)
        out["kv"] = kv[..., :position_width, :]
    return out

