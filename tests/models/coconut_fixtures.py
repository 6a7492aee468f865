"""Fabricated Coconut checkpoints (random weights, fixed seeds) in facebookresearch/coconut's layouts.

How the parity fixtures under `tests/models/fixtures/coconut/` were made (`make_reference_fixtures`):
1. `fabricate(kind, directory)` (this module, in the project's environment) writes a **base** directory
   (tokenizer + `config.json` of a tiny GPT-2- or Llama-shaped LM, vocabulary without the latent tokens)
   and `checkpoint_1`: a `torch.save` state dict in the layout Coconut's `run.py` saves (the `Coconut`
   wrapper's keys `base_causallm.*` and `embedding.weight`, vocabulary + the three added tokens), every
   weight drawn from a generator seeded by its name (the same values on every machine and version).
2. In a scratch environment outside the repository with facebookresearch/coconut at 27273cb and its
   pinned torch 2.5.1 / transformers 4.46.2, a driver script loaded the base config and tokenizer, added
   the three tokens as `run.py` does, wrapped the LM in the reference `Coconut` class, loaded
   `checkpoint_1` into it as `run.py` does (`load_state_dict(..., strict=False)`, printed: no missing or
   unexpected keys), and ran its `generate` (batch size 1, greedy) on each question of `QUESTIONS` with
   K latents for K in 0, 1, 3; it recorded the prompt ids, the output ids, the checkpoint's key list and
   a weight checksum as JSON (`reference_<kind>.json`).
The tests rebuild the checkpoint with `fabricate`, check the checksum and key list against the recorded
ones, then compare the project's answers with the recorded ids.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import torch
from tokenizers import processors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bpe_tokenizers import byte_level_bpe, digit_chunked_bpe  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "coconut"
KINDS = ("gpt2", "llama")
LATENT_TOKENS = ("<|start-latent|>", "<|end-latent|>", "<|latent|>")
BOS = "<|begin_of_text|>"
QUESTIONS = [
    "Tom has 3 apples. He buys 4 more. How many apples does he have?",
    "A baker makes 12 loaves and sells 5.",
    "What is 7 times 8?",
    "Sam reads 20 pages a day for 3 days, then 5 more pages. How many pages in all?",
    "x",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
]
NUM_LATENTS = (0, 1, 3)
MAX_NEW_TOKENS = 12


def base_tokenizer(kind: str):
    """The base tokenizer: GPT-2-style byte-level BPE, or Llama-3-style with a BOS prepended."""
    if kind == "gpt2":
        return byte_level_bpe(300)
    tok = digit_chunked_bpe(300)
    tok = tok.__class__(tokenizer_object=tok.backend_tokenizer.__class__.from_str(tok.backend_tokenizer.to_str()),
                        bos_token=BOS, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token=None,
                        clean_up_tokenization_spaces=False, model_max_length=1024)
    tok.add_special_tokens({"bos_token": BOS})
    bos = tok.convert_tokens_to_ids(BOS)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    return tok


def base_config(kind: str, vocab: int):
    """A tiny HF config of `kind` with `vocab` rows."""
    from transformers import GPT2Config, LlamaConfig

    if kind == "gpt2":
        return GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
                          eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=False, bos_token_id=300, eos_token_id=0, rms_norm_eps=1e-5)


def seeded_weights(lm: torch.nn.Module) -> None:
    """Fill every parameter from a generator seeded by its name (norm weights near 1)."""
    with torch.no_grad():
        for name, param in lm.named_parameters():
            gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            noise = torch.randn(tuple(param.shape), generator=gen, dtype=torch.float32)
            if param.ndim == 1:
                value = 1.0 + 0.1 * noise if "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) \
                    else 0.1 * noise
            else:
                value = 0.3 * noise
            param.copy_(value)


def checksum(state: dict[str, torch.Tensor]) -> float:
    """Sum of |w| * (1 + index of the key in sorted order), over every tensor (a weights fingerprint)."""
    return float(sum(state[k].double().abs().sum() * (i + 1) for i, k in enumerate(sorted(state))))


def fabricate(kind: str, directory: str | Path) -> tuple[Path, Path]:
    """Write `directory/base` (tokenizer + config.json) and `directory/checkpoint_1` (Coconut's layout)."""
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    base = directory / "base"
    base.mkdir(parents=True, exist_ok=True)
    tok = base_tokenizer(kind)
    tok.save_pretrained(base)
    tok_config = base / "tokenizer_config.json"  # a class name every transformers version knows
    tok_config.write_text(json.dumps({**json.loads(tok_config.read_text()), "tokenizer_class": "PreTrainedTokenizerFast"}))
    vocab = len(tok)
    base_config(kind, vocab).save_pretrained(base)
    lm = AutoModelForCausalLM.from_config(base_config(kind, vocab + len(LATENT_TOKENS)))
    seeded_weights(lm)
    lm.tie_weights()
    state = {f"base_causallm.{k}": v.detach().clone() for k, v in lm.state_dict().items()}
    state["embedding.weight"] = lm.get_input_embeddings().weight.detach().clone()
    ckpt = directory / "checkpoint_1"
    torch.save(state, ckpt)
    return base, ckpt


def reference(kind: str) -> dict:
    """The recorded reference run of `kind` (`reference_<kind>.json`)."""
    return json.loads((FIXTURES / f"reference_{kind}.json").read_text())
