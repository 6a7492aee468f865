"""BPE tokenizers like GPT-2's and Llama-3's, trained in the test on GSM8K text (no download).

- `byte_level_bpe`: GPT-2's scheme — byte-level BPE after GPT-2's pre-tokenizer regex, so a
  digit run (with its leading space, if any) is one pre-token that BPE merges into pieces of
  varying length (`" 1234"` may be `" 12"`, `"34"`); `<|endoftext|>` is BOS = EOS = PAD.
- `digit_chunked_bpe`: Llama-3's scheme — its pre-tokenizer regex cuts digit runs into chunks of
  at most three digits (`"1234"` → `"123"`, `"4"`; a space before a number is its own token), then
  byte-level BPE.

Both are `transformers.PreTrainedTokenizerFast`, trained on the questions and worked answers of
GSM8K train's first 600 lines (a fixture in `tests/data/fixtures`, so they are the same on every
machine). Built once per process and argument set.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
"""Llama-3's pre-tokenizer pattern (its tokenizer.json): digit runs split into chunks of ≤ 3."""


FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
TRAIN_TEXT = FIXTURES / "gsm8k_train_head600.jsonl"
"""The tokenizers' training text: GSM8K train's first 600 lines (MIT), in the repository, so the
tokenizers (and the token splits the tests rely on) are the same on every machine."""


def gsm8k_texts(split: str = "train", limit: int | None = 600) -> list[str]:
    """Question and answer texts of the first `limit` GSM8K lines of `split`: train from the fixture
    above; test from the copy shipped with the package."""
    if split == "train":
        rows = [json.loads(line) for line in TRAIN_TEXT.read_text().splitlines()[:limit] if line.strip()]
    else:
        from nnsight_codi.data.gsm8k import read_shipped

        rows = read_shipped(split)[:limit]
    return [text for row in rows for text in (row["question"], row["answer"])]


def _wrap(core: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=EOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=None, clean_up_tokenization_spaces=False, model_max_length=1024)


def _train(core: Tokenizer, vocab_size: int, limit: int | None) -> Tokenizer:
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(gsm8k_texts("train", limit), trainer)
    return core


@functools.lru_cache(maxsize=4)
def byte_level_bpe(vocab_size: int = 2000, limit: int | None = 600) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer trained on GSM8K text (`vocab_size` tokens)."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's regex
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    return _wrap(_train(core, vocab_size, limit))


@functools.lru_cache(maxsize=4)
def digit_chunked_bpe(vocab_size: int = 2000, limit: int | None = 600) -> PreTrainedTokenizerFast:
    """A Llama-3-style BPE tokenizer (digits in chunks of ≤ 3) trained on GSM8K text."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    core.decoder = decoders.ByteLevel()
    return _wrap(_train(core, vocab_size, limit))
