"""Subword tokenizers built in the tests (no download): trained with the `tokenizers` library on
GSM8K text from `../shared/data/gsm8k` (MIT), so numbers and words split as a real model's would.

`byte_level_bpe(vocab_size)`: GPT-2's scheme (byte-level pre-tokenizer with the leading space
attached to a word, `<|endoftext|>` as BOS = EOS = UNK, no pad token), as a
`transformers.PreTrainedTokenizerFast`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

GSM8K_LINES = 2000  # enough text for a 1-2k vocabulary in about a second


def gsm8k_dir() -> Path | None:
    """`shared/data/gsm8k` in this checkout or a parent directory (None when absent)."""
    for parent in Path(__file__).resolve().parents:
        path = parent / "shared" / "data" / "gsm8k"
        if (path / "train.jsonl").is_file():
            return path
    return None


def gsm8k_texts(split: str = "train", limit: int = GSM8K_LINES) -> list[str]:
    """Questions and worked answers of the first `limit` GSM8K lines (skips the test without the data)."""
    root = gsm8k_dir()
    if root is None:
        pytest.skip("shared/data/gsm8k not found")
    out = []
    with open(root / f"{split}.jsonl") as handle:
        for i, line in enumerate(handle):
            if i >= limit:
                break
            row = json.loads(line)
            out += [row["question"], row["answer"]]
    return out


@functools.lru_cache(maxsize=None)
def _byte_level_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(gsm8k_texts(), trainer=trainer)
    return tok.to_str()


def byte_level_bpe(vocab_size: int = 1024):
    """A GPT-2-style byte-level BPE tokenizer trained on GSM8K text, `vocab_size` tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_byte_level_json(vocab_size)),
                                   bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", model_max_length=1024)
