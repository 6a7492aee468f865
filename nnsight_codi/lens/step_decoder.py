"""The step-decoder lens: each latent step's vector decoded into the text of a reasoning step (SIM-CoT).

A SIM-CoT release ships a step decoder (`models.simcot.StepDecoder`, on a loaded model as
`codi.step_decoder`). Step s of the loop (bot = 0, latent k = k) produces the vector that is fed back
next, `z_s = prj(final_norm(h_s))` (CODI; the last latent's is produced but not fed); the decoder turns
`z_s` into the text of reasoning step s+1, greedily. The lens records the last layer's residual stream at
steps 0..K (`StepVectorHook`, one site per step, any executor), applies the final norm and the model's
feedback post hoc, and decodes every (example, step) in one batch.

In a capture (`--what step_decoder`, i.e. `step_text` and `step_ids`) the text sits at the step that
produced the vector, beside that step's logit lens; the eot step holds "". A SIM-CoT *Coconut* release
decodes groups of c_thought fed vectors (`decode_steps`); a group's text sits at the step that produced its
last vector, and the other steps hold "".

Example:
    >>> codi = load_model("path/to/SIM_COT-GPT2-CODI", base="openai-community/gpt2")   # doctest: +SKIP
    >>> out = latent_steps(codi, ["Tom has 3 apples ..."])                               # doctest: +SKIP
    >>> out.texts[0]                                                                      # doctest: +SKIP
    ['<<3*2=6>>', '<<6+4=10>>', ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..models.architecture import final_norm
from ..steps import resolve_num_latents

if TYPE_CHECKING:
    from ..models.simcot import StepDecoder
    from ..tracing.codi_model import CodiModel

STEP_VARS = ("step_text", "step_ids")
DEFAULT_STEP_TOKENS = 48


def step_decoder_of(model: Any) -> StepDecoder:
    """The model's step decoder, or a one-line ValueError saying how to get one."""
    decoder = getattr(model, "step_decoder", None)
    if decoder is None:
        raise ValueError("the step-decoder lens needs a model with a SIM-CoT step decoder (load a SIM-CoT "
                         "release, e.g. internlm/SIM_COT-GPT2-CODI or a local copy of it)")
    return decoder


@dataclass
class StepVectorHook:
    """Record the last layer's residual stream (pre final norm) at the last position of steps 0..K."""

    num_latents: int
    num_layers: int

    def sites(self, step: int) -> list[str]:
        return [f"layer{self.num_layers}"] if step <= self.num_latents else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        sink.append(("step_vector", step, value[:, -1].detach().clone()))


def fed_vectors(codi: CodiModel, hidden: Tensor) -> Tensor:
    """`Float[Tensor, "... dim"]` last-layer residuals → the vectors the loop feeds back (final norm, then the
    model's projection when it uses one).
    """
    lm = codi._module
    weight = next(lm.parameters())
    with torch.inference_mode():
        h = final_norm(lm)(hidden.to(weight.device, weight.dtype))
        return codi.prj(h) if codi.codi_config.use_prj else h


def vectors_from_records(records: Sequence[tuple[str, int, Any]], num_latents: int) -> Tensor:
    """The `StepVectorHook` records → `Float[Tensor, "batch step dim"]` residuals of steps 0..K."""
    by_step = {step: t for name, step, t in records if name == "step_vector"}
    missing = [s for s in range(num_latents + 1) if s not in by_step]
    if missing:
        raise RuntimeError(f"step-decoder lens: no last-layer residual recorded at step(s) {missing}")
    return torch.stack([by_step[s] for s in range(num_latents + 1)], dim=1)


def decode_vectors(decoder: StepDecoder, vectors: Tensor, max_new_tokens: int = DEFAULT_STEP_TOKENS
                   ) -> list[list[list[int]]]:
    """Greedy step ids per (example, step) of `Float[Tensor, "batch step dim"]` fed vectors (one vector a step)."""
    batch, steps = vectors.shape[:2]
    flat = decoder.decode(vectors.reshape(batch * steps, 1, vectors.shape[-1]), max_new_tokens)
    return [flat[i * steps:(i + 1) * steps] for i in range(batch)]


def decode_steps(codi: CodiModel, decoder: StepDecoder, residuals: Tensor, max_new_tokens: int = DEFAULT_STEP_TOKENS
                 ) -> tuple[list[list[list[int]]], list[int], Tensor]:
    """Decode the reasoning steps of one batch from its last-layer residuals at steps 0..K.

    CODI variant: one step per loop step 0..K, from the vector that step produces. Coconut variant: the fed
    vectors of latents 1..K (produced at steps 0..K-1) in groups of `decoder.group` (c_thought), each after
    the optional "Step k of the solution" prompt; a group's text belongs to the step that produced its last
    vector. Returns `(ids[example][slot], the step of each slot, the fed vectors)`.
    """
    vectors = fed_vectors(codi, residuals)
    if decoder.variant != "coconut":
        return decode_vectors(decoder, vectors, max_new_tokens), list(range(vectors.shape[1])), vectors
    k = vectors.shape[1] - 1
    batch = vectors.shape[0]
    ids: list[list[list[int]]] = [[] for _ in range(batch)]
    slots = []
    for g, start in enumerate(range(0, k, decoder.group)):
        group = vectors[:, start:min(start + decoder.group, k)]
        prefix = (list(codi.tokenizer(decoder.prefix_text(g), add_special_tokens=False)["input_ids"])
                  if decoder.prefix else None)
        rows = decoder.decode(group, max_new_tokens, prefix_ids=prefix)
        for i in range(batch):
            ids[i].append(rows[i])
        slots.append(start + group.shape[1] - 1)
    return ids, slots, vectors[:, :k]


def step_text(tokenizer: Any, ids: Sequence[int], eos_id: int | None) -> str:
    """The text of one decoded step: up to (not including) eos, special tokens skipped."""
    ids = list(ids)
    if eos_id is not None and eos_id in ids:
        ids = ids[: ids.index(eos_id)]
    return tokenizer.decode(ids, skip_special_tokens=True)


@dataclass
class StepDecoding:
    """What `latent_steps` returns: per example and step 0..K the decoded ids and text, and the vectors."""

    ids: list[list[list[int]]]
    texts: list[list[str]]
    vectors: Tensor
    answers: list[str]
    steps: list[int]


def latent_steps(codi: CodiModel, questions: Sequence[str], num_latents: int | None = None,
                 max_new_tokens: int = DEFAULT_STEP_TOKENS, remote: Any = None) -> StepDecoding:
    """Run the loop on `questions` and decode the vector of every step 0..K with the model's step decoder."""
    from ..tracing.loop import run_loop

    decoder = step_decoder_of(codi)
    k = resolve_num_latents(num_latents, codi.num_latents)
    hook = StepVectorHook(k, codi.num_layers)
    tokens, records = run_loop(codi, codi.encode(list(questions)), [hook], num_latents=k, remote=remote)
    ids, steps, vectors = decode_steps(codi, decoder, vectors_from_records(records, k), max_new_tokens)
    eos = decoder.eos_id
    texts = [[step_text(codi.tokenizer, row, eos) for row in example] for example in ids]
    return StepDecoding(ids, texts, vectors, codi.decode(tokens), steps)


@dataclass
class StepTextRequest:
    """The step-decoder part of a capture: which of `step_text` / `step_ids` to store, and the token bound."""

    variables: tuple[str, ...]
    max_tokens: int = DEFAULT_STEP_TOKENS

    @classmethod
    def from_variables(cls, variables: Sequence[str], max_tokens: int = DEFAULT_STEP_TOKENS) -> StepTextRequest:
        wanted = tuple(v for v in variables if v in STEP_VARS)
        if wanted and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError(f"--step-tokens must be a positive integer, got {max_tokens!r}")
        return cls(wanted, max_tokens)

    @property
    def active(self) -> bool:
        return bool(self.variables)

    def check(self, model: Any) -> None:
        """Before any work: the model is a CODI model with a step decoder."""
        if self.active:
            step_decoder_of(model)

    def hook(self, num_latents: int, num_layers: int) -> StepVectorHook:
        return StepVectorHook(num_latents, num_layers)

    def arrays(self, codi: CodiModel, records: Sequence[tuple[str, int, Any]], num_latents: int
               ) -> dict[str, np.ndarray]:
        """`step_text [batch, K+2]` and `step_ids [batch, K+2, max_tokens]` of one batch ("" / -1 at eot)."""
        decoder = step_decoder_of(codi)
        ids, slots, _ = decode_steps(codi, decoder, vectors_from_records(records, num_latents), self.max_tokens)
        batch, steps = len(ids), num_latents + 2
        text = np.full((batch, steps), "", dtype=object)
        table = np.full((batch, steps, self.max_tokens), -1, dtype=np.int32)
        for i, example in enumerate(ids):
            for s, row in zip(slots, example):
                text[i, s] = step_text(codi.tokenizer, row, decoder.eos_id)
                table[i, s, : len(row)] = row
        out = {"step_text": text, "step_ids": table}
        return {name: out[name] for name in self.variables}
