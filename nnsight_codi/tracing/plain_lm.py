"""`PlainLM`: the facts of an ordinary (non-CODI) causal LM, read once, and a batch encoder.

A plain HF causal LM reaches the studies as an nnsight `TransformersModel`. `PlainLM.of(model)` reads
what capture, the CoT vectors and the lm-eval harness need from it: the number of transformer blocks
(hidden states are indexed 0..L), the residual-stream width, the vocabulary size, the pad id (the
tokenizer's pad token, else its eos), the ids that end a generation, where inputs go, and the name to
record. `encode` left-pads a batch of texts without touching the tokenizer (its `padding_side` is
whatever the caller set), so a batch row equals the text encoded alone, left-padded.

Example (a GPT-2-shaped LM with 2 blocks over a word-level tokenizer):
    >>> from nnsight import TransformersModel
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> from nnsight_codi.tokenization import build_word_tokenizer
    >>> tok = build_word_tokenizer(["tom", "has", "pens", "."], max_number=9)
    >>> eos = tok.eos_token_id
    >>> lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=8, n_head=2, vocab_size=len(tok), bos_token_id=eos,
    ...                                 eos_token_id=eos))
    >>> plain = PlainLM.of(TransformersModel(lm, tokenizer=tok))
    >>> tok.padding_side = "right"                           # a caller's setting, which encode leaves alone
    >>> plain.num_layers, plain.hidden_size, plain.pad_id == tok.pad_token_id, plain.stop_ids == {eos}
    (2, 8, True, True)
    >>> batch = plain.encode(["tom has 3 pens .", "3 pens"])
    >>> batch.attention_mask.tolist(), tok.padding_side
    ([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]], 'right')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .batching import left_pad
from .codi_model import PromptBatch

if TYPE_CHECKING:
    from jaxtyping import Int
    from nnsight import TransformersModel
    from torch import Tensor


@dataclass(frozen=True)
class PlainLM:
    """A plain causal LM (`model`, an nnsight `TransformersModel`) and its facts, read once by `of`.

    `num_layers` is the number of transformer blocks L (hidden states 0..L: 0 = the embeddings);
    `stop_ids` are the tokenizer's eos and the generation config's eos ids within the vocabulary;
    `device` is where inputs go (the CPU for a remote model, whose local copy is on `meta`).
    """

    model: TransformersModel = field(repr=False, compare=False)
    num_layers: int
    hidden_size: int
    vocab_size: int
    pad_id: int
    stop_ids: frozenset[int]
    device: torch.device
    model_id: str

    @classmethod
    def of(cls, model: TransformersModel) -> PlainLM:
        """Read the facts of `model` (`ValueError` if its tokenizer has neither a pad nor an eos token)."""
        config = model._module.config
        tok = model.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token")
        vocab = int(config.vocab_size)
        return cls(model=model, num_layers=int(config.num_hidden_layers), hidden_size=int(config.hidden_size),
                   vocab_size=vocab, pad_id=int(pad), stop_ids=frozenset(_stop_ids(model, vocab)),
                   device=_input_device(model),
                   model_id=str(getattr(config, "_name_or_path", "") or type(model._module).__name__))

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (never changed here)."""
        return self.model.tokenizer

    def prompt_ids(self, text: str) -> list[int]:
        """The token ids of one text, as the tokenizer encodes it (its default special tokens)."""
        return list(self.tokenizer(text)["input_ids"])

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
        """Left-pad token id lists with `pad_id`: `(ids, attention mask)` on the CPU."""
        return left_pad(rows, self.pad_id)

    def encode(self, texts: Sequence[str]) -> PromptBatch:
        """Left-padded ids and attention mask of `texts` (`Long[Tensor, "batch seq"]`), on `device`."""
        if isinstance(texts, str):
            texts = [texts]
        ids, mask = self.pad([self.prompt_ids(t) for t in texts])
        return PromptBatch(ids.to(self.device), mask.to(self.device))


def _stop_ids(model: TransformersModel, vocab_size: int) -> set[int]:
    """Token ids that end a generation: the tokenizer's eos and the generation config's eos ids."""
    ids: set[int] = set()
    tok = model.tokenizer
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    gen = getattr(model._module, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if eos is not None:
        ids.update(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
    return {i for i in ids if i < vocab_size}


def _input_device(model: TransformersModel) -> torch.device:
    """The model's device, or the CPU for a model without local weights (a remote model's copy is on `meta`)."""
    try:
        device = next(model._module.parameters()).device
    except StopIteration:
        return torch.device("cpu")
    return torch.device("cpu") if device.type == "meta" else device
