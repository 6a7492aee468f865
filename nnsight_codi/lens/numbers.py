"""Which vocabulary tokens show a number, under any tokenizer: whole spellings and first tokens.

A lens read-out is one token. A word-level vocabulary spells every number in range as one token,
but BPE tokenizers split numbers: GPT-2's byte-level BPE writes `" 1234"` in pieces of varying
length, with or without a leading space; Llama-3 cuts digit runs into chunks of up to three
(`"1234"` → `"123"`, `"4"`), so most values ≥ 1000 are never one token. The rule here:

A read-out token **shows** a value v when either
1. it spells v whole (`" 52"`, `"52"`, `"1,200"` for 1200), or
2. it is v's **first token** as the model's tokenizer writes v — its decimal text with a leading
   space and without (`" 1234"`, `"1234"`), pure-space tokens (SentencePiece's `"▁"`) skipped —
   provided that token's digits begin v's text (a token that merges the digits with something
   else, or `<unk>`, shows nothing).

Rule 2 is how lens studies on Llama score multi-token targets (the first token the model would
have to emit); it applies to whole numbers only: the first token of a decimal is its integer part
(`2.5` → `"2"`, `"."`, `"5"`), which would count a read-out of 2 as showing 2.5. Under a
word-level tokenizer rule 2 adds nothing (a number in range is its own first token; one out of
range is `<unk>`), so its results equal the whole-token rule's (tested on the shipped tiny
tokenizer). Without a tokenizer only rule 1 applies.

The alternative, a short greedy continuation of the lens distribution, needs the model at the
read-out position (a lens gives one distribution, not a continuation); offline analyses read
stores without the model, so it is not used.

Example:
    >>> vocab = ["<unk>", " 12", "34", "12", "1234", "+", " 5"]
    >>> pieces = {"1234": [3, 2], " 1234": [1, 2], "5": [6], " 5": [6], "12": [3], " 12": [1]}
    >>> reader = NumberTokens(vocab, encode=lambda text: pieces.get(text, [0]))
    >>> sorted(reader.ids(1234.0)), sorted(reader.ids(12.0)), sorted(reader.ids(5.0))
    ([1, 3, 4], [1, 3], [6])
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .values import hits

_SPELLED = re.compile(r"-?\d+(?:\.\d+)?")
_SPACES = "Ġ▁"


def token_digits(token: str) -> str | None:
    """The number a token spells, as text (`" 1,200"` → `"1200"`, `"Ġ12"` → `"12"`); None if none."""
    s = str(token).strip()
    for marker in _SPACES:
        s = s.replace(marker, "")
    s = s.replace(",", "")
    return s if s and _SPELLED.fullmatch(s) else None


def value_text(value: float) -> str | None:
    """How a whole number is written for rule 2 (`1234.0` → `"1234"`); None for NaN, infinities
    and non-integers (rule 1 still applies to them).
    """
    if value != value or value in (float("inf"), float("-inf")) or not float(value).is_integer():
        return None
    return str(int(value))


def _first_digit_token(ids: Sequence[int], vocab: Sequence[str]) -> int | None:
    """The first id whose token is not pure space (SentencePiece's `▁`), or None."""
    for i in ids:
        text = vocab[i] if 0 <= i < len(vocab) else ""
        if text.strip().strip(_SPACES):
            return int(i)
    return None


class NumberTokens:
    """The token ids that show each value under the module's rule.

    Args:
        token_strings: the decoded string of every vocabulary id (a store's `token_string`).
        encode: text → token ids without special tokens (the model's tokenizer), or None for the
            whole-token rule only.
    """

    def __init__(self, token_strings: Sequence[str], encode: Callable[[str], Sequence[int]] | None = None):
        self.vocab = [str(s) for s in token_strings]
        self.encode = encode
        self.digits = [token_digits(s) for s in self.vocab]
        self._whole: dict[float, set[int]] = {}
        for i, d in enumerate(self.digits):
            if d is not None:
                self._whole.setdefault(float(d), set()).add(i)
        self._cache: dict[float, frozenset[int]] = {}

    @property
    def rule(self) -> str:
        return "whole token" if self.encode is None else "whole token or first token"

    def first_tokens(self, value: float) -> set[int]:
        """Rule 2: the first token of `value` written with and without a leading space."""
        text = value_text(value)
        if self.encode is None or text is None:
            return set()
        out = set()
        for written in (text, " " + text):
            first = _first_digit_token(list(self.encode(written)), self.vocab)
            digits = self.digits[first] if first is not None else None
            if digits is not None and text.startswith(digits):
                out.add(first)
        return out

    def ids(self, value: float) -> frozenset[int]:
        """Every token id that shows `value` (rule 1 ∪ rule 2)."""
        value = float(value)
        if value not in self._cache:
            self._cache[value] = frozenset(self._whole.get(value, set()) | self.first_tokens(value))
        return self._cache[value]

    def ids_of(self, values) -> set[int]:
        out: set[int] = set()
        for v in values:
            out |= self.ids(v)
        return out

    def target_ids(self, sets: Mapping[str, set[float]]) -> dict[str, set[int]]:
        """The four target sets of one problem (`values.target_sets`) as token ids, disjoint: a token
        that shows values of several targets counts for the first of answer, intermediate, near
        miss, operand (the order in which `target_sets` makes the values disjoint).
        """
        out: dict[str, set[int]] = {}
        taken: set[int] = set()
        for name in ("answer", "intermediate", "near_miss", "operand"):
            out[name] = self.ids_of(sets.get(name, ())) - taken
            taken |= out[name]
        return out


def hits_ids(ids: np.ndarray, id_sets: Sequence[set[int]], k: int) -> np.ndarray:
    """Does any of the top-`k` read-out ids show one of the example's targets?

    Args:
        ids: `Int[ndarray, "example ... k_all"]` read-out token ids.
        id_sets: one set of token ids per example (`NumberTokens.target_ids`).

    Returns:
        `Bool[ndarray, "example ..."]`.
    """
    return hits(ids, id_sets, k)  # the same test as for numbers, on token ids


def one_op_candidates(answer: float, numbers: Sequence[float]) -> set[float]:
    """Every v with `answer` = v op q for a question number q and op in + − × ÷ (both orders):
    the values `values.one_op_away` accepts, listed.
    """
    out: set[float] = set()
    if answer != answer:
        return out
    for q in numbers:
        out |= {answer - q, answer + q, q - answer}
        if q:
            out.add(answer / q)
        out.add(answer * q)
        if answer:
            out.add(q / answer)
    return out


def tokenizer_encoder(source: Any) -> Callable[[str], list[int]] | None:
    """An `encode(text) → ids` (no special tokens) from a `tokenizers.Tokenizer`, a transformers
    tokenizer, a `tokenizer.json` text or path, or a directory holding one; None for None.
    """
    if source is None:
        return None
    if hasattr(source, "backend_tokenizer"):
        source = source.backend_tokenizer
    if hasattr(source, "encode") and hasattr(source, "to_str"):
        tok = source
    else:
        from tokenizers import Tokenizer

        text = str(source)
        if text.lstrip().startswith("{"):
            tok = Tokenizer.from_str(text)
        else:
            path = Path(text)
            path = path / "tokenizer.json" if path.is_dir() else path
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no tokenizer.json (give a tokenizer.json file or its directory)")
            tok = Tokenizer.from_file(str(path))
    return lambda s: tok.encode(s, add_special_tokens=False).ids


def store_tokenizer(ds) -> str | None:
    """The tokenizer a store carries (`tokenizer_json`, written with lens read-outs), or None."""
    if "tokenizer_json" not in ds:
        return None
    value = ds["tokenizer_json"].values.reshape(-1)[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def write_tokenizer(path, tokenizer) -> bool:
    """Put a fast tokenizer's `tokenizer.json` into the store at `path` as `tokenizer_json`
    (dim `tokenizer`, one string), so offline analyses can tell multi-token values; False (nothing
    written) for a tokenizer without a `tokenizers` backend. Idempotent.
    """
    import xarray as xr
    import zarr

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    ds = xr.Dataset({"tokenizer_json": (("tokenizer",), np.asarray([backend.to_str()], dtype=object),
                                        {"description": "the model's tokenizer (tokenizers JSON): which tokens "
                                                        "begin a number (nnsight_codi.lens.numbers)"})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attrs = dict(zarr.open_group(path, mode="r", zarr_format=3).attrs)  # xarray's append resets them
        ds.to_zarr(path, mode="a", zarr_format=3, consolidated=False)
        zarr.open_group(path, mode="r+", zarr_format=3).attrs.update(attrs)
        zarr.consolidate_metadata(path)
    return True
