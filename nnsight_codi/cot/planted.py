"""A planted-signal model for checking the CoT-vector pipeline: a tiny chat LM whose reasoning
mode is, by construction, one known direction `d` of the residual stream at one known layer.

`train_planted_model` trains (a few hundred steps, seconds on a CPU) a 2-layer GPT-2 with the
word-level chat tokenizer of `prompts.word_chat_tokenizer` on `User : <words> <instruction>
Assistant :` → `<< 1 + 1 = 2 >> The answer is: 2` (the `cot` instruction word) or `The answer
is: 2` (the `direct` one), with two constraints at the site `layer` (the output of block
`layer - 1`, plain PyTorch hooks, independent of the pipeline's nnsight sites):

- **write**: from the instruction on (prompt and reply), `<h, d> = +alpha` (cot) or `-alpha`
  (direct) (MSE), and
  the cot and direct prompts of one question (paired in the batch) differ nowhere else at those
  positions (the orthogonal part of their difference is penalised);
- **read**: in half the examples `±2·alpha·d` is added at every position (as steering would)
  and the target reply follows the sign of the shifted bit, not the instruction, so the layers
  above read the mode from `d`.

A correct pipeline then extracts `v_layer ≈ 2·alpha·d` (cosine with `d` near 1 at the last prompt
position) and steering the direct prompt with it makes the model write chains; a random direction
of the same norm does not. A null result on a real model is then about the model, not the tool.

    >>> planted = train_planted_model(steps=300)                       # doctest: +SKIP
    >>> planted.direction.shape, planted.layer                         # doctest: +SKIP
    (torch.Size([32]), 1)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from nnsight import TransformersModel
from transformers import GPT2Config, GPT2LMHeadModel

from .prompts import word_chat_tokenizer

REPLIES = {"cot": "<< 1 + 1 = 2 >> The answer is: 2", "direct": "The answer is: 2"}


@dataclass
class PlantedModel:
    """The trained planted model (an nnsight `TransformersModel`), its mode direction and site."""

    model: object
    direction: torch.Tensor  # unit vector, (dim,)
    layer: int
    alpha: float
    cot_word: str
    direct_word: str
    losses: list[float]


def planted_questions(n: int, seed: int = 0, min_words: int = 3, max_words: int = 7):
    """A `datasets.Dataset` (`id`, `question`, `answer` = 2) of random word strings of varied length."""
    from datasets import Dataset

    from ..data.synthetic import template_words

    words = sorted(w for w in template_words() if w.isalpha())
    rng = random.Random(seed)
    rows = [{"id": f"planted-{seed}-{i}", "answer": "2",
             "question": " ".join(rng.choice(words) for _ in range(rng.randint(min_words, max_words)))}
            for i in range(n)]
    return Dataset.from_list(rows)


def train_planted_model(steps: int = 300, layer: int = 1, n_layer: int = 2, dim: int = 32, alpha: float = 4.0,
                        batch: int = 32, lr: float = 3e-3, seed: int = 0, cot_word: str = "thinking",
                        direct_word: str = "immediately", save_to: str | Path | None = None) -> PlantedModel:
    """Train the planted model (see the module doc); `save_to` also writes it as a HF directory."""
    from ..data.synthetic import template_words
    if not 1 <= layer < n_layer:
        raise ValueError(f"layer must be in 1..{n_layer - 1} (a block must read it), got {layer}")
    tok = word_chat_tokenizer()
    tok.padding_side = "left"
    # transformers types special-token ids as int | str | list | None; this tokenizer has both as ints
    eos_id, pad_id = cast(int, tok.eos_token_id), cast(int, tok.pad_token_id)
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=dim, n_head=4, vocab_size=len(tok), n_positions=64,
                     bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    lm = GPT2LMHeadModel(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    d = torch.randn(dim, generator=gen)
    d = d / d.norm()
    rng = random.Random(seed + 2)
    words = sorted(w for w in template_words() if w.isalpha() and w not in (cot_word, direct_word))

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    def prompt(question: str, word: str) -> list[int]:
        msg = [{"role": "user", "content": f"{question} {word}"}]
        return ids(cast(str, tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)))

    reply = {m: ids(f"{REPLIES[m]} {tok.eos_token}") for m in REPLIES}
    (cot_id,), (direct_id,) = ids(cot_word), ids(direct_word)
    if tok.unk_token_id in (cot_id, direct_id):
        raise ValueError(f"{cot_word!r} / {direct_word!r} must be words of the tokenizer")
    state: dict = {}

    def hook(module, args, output):  # the site: block (layer - 1)'s output
        h = output[0] if isinstance(output, tuple) else output
        state["h"] = h
        if state.get("shift") is not None:  # the read constraint: shift the bit, as steering would
            h = h + state["shift"][:, None, None] * d
        return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h

    handle = lm.transformer.h[layer - 1].register_forward_hook(hook)
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    lm.train()
    try:
        for _ in range(steps):
            n_words = rng.randint(3, 7)
            qs = [" ".join(rng.choice(words) for _ in range(n_words)) for _ in range(batch // 2)]
            rows, modes = [], []
            for q in qs:  # each question in both modes, next to each other (same length: paired)
                for m, word in (("cot", cot_word), ("direct", direct_word)):
                    rows.append((prompt(q, word), m))
                    modes.append(m)
            plen = len(rows[0][0])
            start = rows[0][0].index(cot_id)  # the instruction's position
            # half the rows: the bit shifted by +-2 alpha at every position; their reply follows the shift
            shift = torch.tensor([rng.choice((2.0, -2.0)) * alpha if rng.random() < 0.5 else 0.0 for _ in rows])
            natural = torch.tensor([1.0 if m == "cot" else -1.0 for m in modes])
            target_mode = ["cot" if (sh > 0 if sh != 0 else n > 0) else "direct" for sh, n in zip(shift, natural)]
            width = plen + max(len(r) for r in reply.values())
            x = torch.full((len(rows), width), pad_id)
            y = torch.full((len(rows), width), -100)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, ((p, _), m) in enumerate(zip(rows, target_mode)):
                seq = p + reply[m]
                x[i, : len(seq)] = torch.tensor(seq)
                y[i, plen - 1: len(seq) - 1] = torch.tensor(reply[m])
                mask[i, : len(seq)] = 1
            state["shift"] = shift
            logits = lm(input_ids=x, attention_mask=mask).logits
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                   ignore_index=-100)
            h = state["h"]  # before the override
            written = h @ d  # 0 before the instruction, +-alpha from it through the reply (padding excluded)
            want = torch.zeros_like(written)
            want[:, start:] = alpha * natural[:, None]
            valid = mask.float()
            write = (((written - want) ** 2) * valid).sum() / valid.sum()
            diff = h[0::2, start:plen] - h[1::2, start:plen]
            ortho = (diff - (diff @ d)[..., None] * d).pow(2).sum(-1).mean()
            loss = ce + write + ortho
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        handle.remove()
        state.clear()
    lm.eval()
    if save_to is not None:
        lm.save_pretrained(save_to)
        tok.save_pretrained(save_to)
    model = TransformersModel(lm, tokenizer=tok, task="text-generation")
    return PlantedModel(model, d, layer, alpha, cot_word, direct_word, losses)
