"""Base models for CODI training: the tiny word-level GPT-2, or a local HF causal LM.

Special tokens follow the reference: with V the base vocabulary size, pad = V, bot = V+1,
eot = V+2 (added to the tokenizer and the embedding matrix when missing); eos is the
tokenizer's eos.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import cast

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..tokenization import build_word_tokenizer, special_ids

BOT_TOKEN, EOT_TOKEN, PAD_TOKEN = "<|bot|>", "<|eot|>", "[PAD]"


def build_tiny_gpt2(tokenizer, n_layer: int = 4, n_embd: int = 128, n_head: int = 4, n_positions: int = 256,
                    seed: int = 0) -> GPT2LMHeadModel:
    """A small GPT-2 (no dropout, tied embeddings) over `tokenizer`'s vocabulary, seeded init."""
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    ids = special_ids(tokenizer)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=ids["eos_id"], eos_token_id=ids["eos_id"],
        pad_token_id=ids["pad_id"], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def tiny_base(max_number: int = 999, n_layer: int = 4, n_embd: int = 128, n_head: int = 4,
              seed: int = 0, number_init: str = "random") -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, int]]:
    """`(model, tokenizer, ids)` for the tiny word-level model; ids: pad_id, bot_id, eot_id, eos_id.

    `number_init="fourier"` initialises the number tokens' embeddings with `number_features`.
    """
    tok = build_word_tokenizer(max_number=max_number)
    model = build_tiny_gpt2(tok, n_layer=n_layer, n_embd=n_embd, n_head=n_head, seed=seed)
    init_number_embeddings(model, tok, max_number, number_init)
    return model, tok, special_ids(tok)


def init_number_embeddings(model: PreTrainedModel, tokenizer, max_number: int, number_init: str = "fourier") -> None:
    """`"fourier"`: set the number tokens' input embeddings from `number_features` (in place);
    `"random"`: leave the init as is.
    """
    if number_init == "fourier":
        ids = [tokenizer.convert_tokens_to_ids(str(n)) for n in range(max_number + 1)]
        with torch.no_grad():
            emb = embedding_matrix(model)
            feats = number_features(max_number + 1, emb.shape[1])
            emb[ids, : feats.shape[1]] = feats
    elif number_init != "random":
        raise ValueError(f"number_init must be 'random' or 'fourier', got {number_init!r}")


def embedding_matrix(model: PreTrainedModel) -> torch.Tensor:
    """The input-embedding weight `Float[Tensor, "vocab d"]` (the live parameter, not a copy)."""
    # transformers types get_input_embeddings() as nn.Module, whose .weight is Tensor | Module.
    return cast(torch.Tensor, model.get_input_embeddings().weight)


def number_features(count: int, dim: int, scale: float = 0.05) -> torch.Tensor:
    """Value-structured vectors for the numbers 0..count-1: `Float[Tensor, "count f"]`, f ≤ dim/2.

    Columns are `cos(2πn/T), sin(2πn/T)` for periods T geometrically spaced from 2 to
    10·count, plus exact periods 10 and 100 (place values), times `scale` (GPT-2's init is
    0.02). Nearby numbers get similar vectors and adding a constant is a rotation, which
    makes the arithmetic much faster to learn for a tiny model with one token per number.
    """
    pairs = max(1, dim // 4)
    periods = torch.logspace(math.log10(2.0), math.log10(10.0 * count), pairs - 2).tolist() + [10.0, 100.0]
    n = torch.arange(count, dtype=torch.float32)[:, None]
    angles = 2 * math.pi * n / torch.tensor(periods)[None, :]
    return scale * torch.cat([angles.cos(), angles.sin()], dim=1)


def hf_base(directory: str | Path, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, int]]:
    """Load a local HF causal LM and add pad/bot/eot (V, V+1, V+2) where missing. Offline only."""
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a Hugging Face model directory (no config.json); "
                                "use --base tiny-gpt2 or a local model directory")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    if tok.eos_token_id is None:
        raise ValueError(f"{path}: the tokenizer has no eos token")
    added: dict = {}
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        added["pad_token"] = PAD_TOKEN
    added["additional_special_tokens"] = [BOT_TOKEN, EOT_TOKEN]
    tok.add_special_tokens(added, replace_extra_special_tokens=False) if _accepts_replace(tok) \
        else tok.add_special_tokens(added)
    if embedding_matrix(model).shape[0] < len(tok):
        model.resize_token_embeddings(len(tok))
    ids = {
        "pad_id": tok.pad_token_id,
        "bot_id": tok.convert_tokens_to_ids(BOT_TOKEN),
        "eot_id": tok.convert_tokens_to_ids(EOT_TOKEN),
        "eos_id": tok.eos_token_id,
    }
    return model, tok, ids


def _accepts_replace(tok) -> bool:
    try:
        return "replace_extra_special_tokens" in inspect.signature(tok.add_special_tokens).parameters
    except (TypeError, ValueError):
        return False


def family_of(model: nn.Module) -> str:
    """The checkpoint family of a model: `"llama"`, `"gpt2"`, or else its config's `model_type`."""
    kind = getattr(getattr(model, "config", None), "model_type", "") or ""
    return "llama" if "llama" in kind else ("gpt2" if "gpt2" in kind else kind)
