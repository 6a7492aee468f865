"""A word-level tokenizer in which every number in range is a single token.

Built with `tokenizers` (WordLevel model, whitespace/punctuation pre-tokenizer) and wrapped
in a `transformers.PreTrainedTokenizerFast`, so it saves and loads with
`save_pretrained` / `AutoTokenizer.from_pretrained` like any HF tokenizer, offline.

Vocabulary layout (V = base vocabulary size):

    0 <unk>, 1 <eos>, 2.. numbers 0..max_number, then symbols and words (sorted),
    V <pad>, V+1 <bot>, V+2 <eot>        # the reference's pad/bot/eot = V, V+1, V+2

The pre-tokenizer splits on whitespace and between word characters and punctuation, so
`"<<4*6=24>>"` and `"<< 4 * 6 = 24 >>"` both give `<< 4 * 6 = 24 >>`. Decoding joins
tokens with single spaces. Unknown words map to `<unk>`.

Example:
    >>> tok = build_word_tokenizer(["Tom", "has", "pens", "."], max_number=99)
    >>> tok.convert_ids_to_tokens(tok("Tom has 42 pens .")["input_ids"])
    ['Tom', 'has', '42', 'pens', '.']
    >>> tok.convert_ids_to_tokens(tok("Tom has 420 zebras")["input_ids"])
    ['Tom', 'has', '<unk>', '<unk>']
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

UNK, EOS, PAD, BOT, EOT = "<unk>", "<eos>", "<pad>", "<bot>", "<eot>"


def build_word_tokenizer(words: Iterable[str] | None = None, max_number: int = 999,
                         model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` plus the numbers `0..max_number`.

    Args:
        words: words and symbols of the vocabulary (duplicates and digit strings are ignored);
            default: every word the synthetic generator emits (`template_words()`).
        max_number: the largest number that is one token.
        model_max_length: recorded in the saved tokenizer config.

    Returns:
        A `PreTrainedTokenizerFast` with `eos_token="<eos>"`, `pad_token="<pad>"`,
        `unk_token="<unk>"` and `<bot>`, `<eot>` as additional special tokens, which are the
        last three ids (`pad_token_id == len(tokenizer) - 3`).
    """
    if max_number < 0:
        raise ValueError(f"max_number must be >= 0, got {max_number}")
    if words is None:
        from .data.synthetic import template_words

        words = template_words()
    specials_head = [UNK, EOS]
    specials_tail = [PAD, BOT, EOT]
    vocab: dict[str, int] = {}
    for token in [*specials_head, *(str(i) for i in range(max_number + 1))]:
        vocab[token] = len(vocab)
    for word in sorted(set(words)):
        if not isinstance(word, str) or not word or any(ch.isspace() for ch in word):
            raise ValueError(f"vocabulary entries must be non-empty strings without spaces, got {word!r}")
        if word.isdigit() or word in vocab or word in specials_tail:
            continue
        vocab[word] = len(vocab)
    for token in specials_tail:
        vocab[token] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token=UNK, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[BOT, EOT], model_max_length=model_max_length,
        padding_side="left", clean_up_tokenization_spaces=False,
    )
    return tok


def load_word_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with `save_pretrained` (offline; clear error if missing)."""
    path = Path(directory)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path / 'tokenizer.json'} not found: not a saved tokenizer directory")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def special_ids(tokenizer) -> dict[str, int]:
    """`{"pad_id", "bot_id", "eot_id", "eos_id"}` of a word tokenizer built here."""
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in
           (("pad_id", PAD), ("bot_id", BOT), ("eot_id", EOT), ("eos_id", EOS))}
    unk = tokenizer.unk_token_id
    missing = [k for k, v in ids.items() if v is None or (v == unk and k != "unk")]
    if missing:
        raise ValueError(f"tokenizer lacks special tokens for {missing}")
    return ids
