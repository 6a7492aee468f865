"""Seeded synthetic GSM8K-style multi-step arithmetic word problems.

Each problem is a short story about one person and one kind of item: an opening that sets
(or, for a "boxes of" opening, multiplies up) a starting amount, then one sentence per
operation (+, −, ×, ÷), then a question. Every intermediate value is recorded, and the chain
of thought is written in the GSM8k-Aug format, one `<<a op b = c>>` equation per step:

    question: "Tom buys 4 boxes of pens with 6 in each . He loses 3 pens .
               How many pens does Tom have now ?"
    cot:      "<< 4 * 6 = 24 >> << 24 - 3 = 21 >>"        (style "spaced", for word tokenizers)
              "<<4*6=24>> <<24-3=21>>"                    (style "compact", as in GSM8k-Aug)
    answer:   "21"            intermediates: [24, 21]     steps: 2

All values (operands and every intermediate result) stay in `value_range`; divisions are
exact. The same seed and options always give the same problems (a private `random.Random`).

Example:
    >>> ds = generate_problems(3, seed=0)
    >>> ds.column_names[:4]
    ['id', 'question', 'cot', 'answer']
    >>> generate_problems(3, seed=0)["question"] == ds["question"]
    True
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import Any

from datasets import Dataset, DatasetDict

from .chains import equations

OPS = ("+", "-", "*", "/")

NAMES: tuple[tuple[str, str, str], ...] = (
    # name, subject pronoun, object pronoun
    ("Tom", "He", "him"), ("Sam", "He", "him"), ("Ben", "He", "him"), ("Max", "He", "him"),
    ("Leo", "He", "him"), ("Jack", "He", "him"), ("Omar", "He", "him"), ("Ravi", "He", "him"),
    ("Anna", "She", "her"), ("Mia", "She", "her"), ("Lily", "She", "her"), ("Emma", "She", "her"),
    ("Sara", "She", "her"), ("Nina", "She", "her"), ("Zoe", "She", "her"), ("Aisha", "She", "her"),
)
FRIENDS: tuple[str, ...] = ("a friend", "a cousin", "a classmate", "a neighbor", "the teacher")
ITEMS: tuple[str, ...] = (
    "apples", "pens", "marbles", "stickers", "cards", "books", "coins", "cookies",
    "stamps", "shells", "candies", "balloons", "pencils", "toys", "eggs", "flowers",
)
CONTAINERS: tuple[str, ...] = ("boxes", "bags", "packs", "jars")

# Openings. `{a}` is the starting amount; the "boxes" opening is itself a × step (a*b).
OPENINGS_PLAIN = (
    "{name} has {a} {items} .",
    "{name} starts with {a} {items} .",
    "There are {a} {items} in {name_pos} room .",
    "{name} collected {a} {items} .",
)
OPENINGS_MUL = (
    "{name} buys {a} {containers} of {items} with {b} in each .",
    "{name} has {a} {containers} with {b} {items} each .",
)
PHRASES: dict[str, tuple[str, ...]] = {
    "+": (
        "{P} gets {b} more .",
        "{P} buys {b} more {items} .",
        "{Friend} gives {o} {b} {items} .",
        "{P} finds {b} {items} .",
    ),
    "-": (
        "{P} loses {b} {items} .",
        "{P} gives {b} to {friend} .",
        "{P} sells {b} of them .",
        "Then {p} uses {b} {items} .",
    ),
    "*": (
        "{P} ends up with {b} times as many .",
        "Then the number of {items} grows {b} times .",
        "{P} makes it {b} times as many .",
    ),
    "/": (
        "{P} splits them into {b} equal groups and keeps one .",
        "{P} shares them among {b} kids and keeps one share .",
        "Then only one in {b} {items} is kept .",
    ),
}
QUESTIONS = (
    "How many {items} does {name} have now ?",
    "How many {items} does {p} have in the end ?",
    "How many {items} are there now ?",
    "How many are left ?",
)
ANSWER_PREFIX = "The answer is :"
COT_SYMBOLS = ("<<", ">>", "=", "+", "-", "*", "/", ".", ",", "?", ":")


@dataclass(frozen=True)
class SyntheticOptions:
    """Difficulty options of the generator.

    Attributes:
        min_steps, max_steps: number of equations (operations) per problem, inclusive (each ≥ 1).
        value_range: inclusive (low, high) bound on every value: operands and all results.
        add_range: inclusive range of the operand of + and −.
        mul_range: inclusive range of the factor of × and the divisor of ÷ (and of the
            per-container count of a "boxes" opening).
        ops: operations allowed after the opening, a subset of "+-*/".
        mul_opening: probability that the opening is itself a × step ("4 boxes of 6 pens").
        cot_style: "spaced" (`<< 4 * 6 = 24 >>`, one token per symbol for a word tokenizer) or
            "compact" (`<<4*6=24>>`, the GSM8k-Aug spelling).
    """

    min_steps: int = 2
    max_steps: int = 4
    value_range: tuple[int, int] = (0, 199)
    add_range: tuple[int, int] = (1, 20)
    mul_range: tuple[int, int] = (2, 5)
    ops: str = "+-*/"
    mul_opening: float = 0.3
    cot_style: str = "spaced"

    def __post_init__(self) -> None:
        lo, hi = self.value_range
        if not (1 <= self.min_steps <= self.max_steps):
            raise ValueError(f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        if not (0 <= lo < hi):
            raise ValueError(f"value_range must be (low, high) with 0 <= low < high, got {self.value_range}")
        if self.add_range[0] < 1 or self.add_range[0] > self.add_range[1] or self.add_range[1] > hi:
            raise ValueError(f"bad add_range {self.add_range} for value_range {self.value_range}")
        if self.mul_range[0] < 2 or self.mul_range[0] > self.mul_range[1]:
            raise ValueError(f"bad mul_range {self.mul_range}: factors must be >= 2")
        if not self.ops or set(self.ops) - set(OPS):
            raise ValueError(f"ops must be a non-empty subset of '+-*/', got {self.ops!r}")
        if self.cot_style not in ("spaced", "compact"):
            raise ValueError(f"cot_style must be 'spaced' or 'compact', got {self.cot_style!r}")
        if not 0.0 <= self.mul_opening <= 1.0:
            raise ValueError(f"mul_opening must be a probability, got {self.mul_opening}")


def apply_op(a: int, op: str, b: int) -> int:
    """`a op b` for op in "+-*/"; "/" must divide exactly."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0 or a % b:
            raise ValueError(f"{a} / {b} is not an exact division")
        return a // b
    raise ValueError(f"unknown op {op!r}")


def format_equation(a: int, op: str, b: int, c: int, style: str = "spaced") -> str:
    """One CoT step: `<< a op b = c >>` (spaced) or `<<a op b=c>>` without spaces (compact)."""
    if style == "compact":
        return f"<<{a}{op}{b}={c}>>"
    return f"<< {a} {op} {b} = {c} >>"


def parse_cot(cot: str) -> list[tuple[int, str, int, int]]:
    """Parse a chain of two-operand equations into `(a, op, b, c)` tuples (either style)."""
    return [(e.a, e.op, e.b, e.c) for e in equations(cot)]


def _feasible_ops(v: int, opts: SyntheticOptions) -> list[tuple[str, int]]:
    lo, hi = opts.value_range
    out: list[tuple[str, int]] = []
    a_lo, a_hi = opts.add_range
    m_lo, m_hi = opts.mul_range
    if "+" in opts.ops and v + a_lo <= hi:
        out.append(("+", min(a_hi, hi - v)))
    if "-" in opts.ops and v - a_lo >= lo:
        out.append(("-", min(a_hi, v - lo)))
    if "*" in opts.ops and v >= 1 and v * m_lo <= hi and v * m_lo >= lo:
        out.append(("*", min(m_hi, hi // v)))
    if "/" in opts.ops and v >= m_lo and any(v % k == 0 and v // k >= lo for k in range(m_lo, m_hi + 1)):
        out.append(("/", m_hi))
    return out


def _sample_operand(rng: random.Random, op: str, v: int, limit: int, opts: SyntheticOptions) -> int:
    if op in "+-":
        return rng.randint(opts.add_range[0], limit)
    if op == "*":
        return rng.randint(opts.mul_range[0], limit)
    divisors = [k for k in range(opts.mul_range[0], limit + 1) if v % k == 0 and v // k >= opts.value_range[0]]
    return rng.choice(divisors)


def _sample_problem(rng: random.Random, opts: SyntheticOptions) -> dict[str, Any]:
    lo, hi = opts.value_range
    n_steps = rng.randint(opts.min_steps, opts.max_steps)
    name, P, o = rng.choice(NAMES)
    items = rng.choice(ITEMS)
    fill = {
        "name": name, "P": P, "p": P.lower(), "o": o, "items": items,
        "name_pos": "his" if P == "He" else "her", "containers": rng.choice(CONTAINERS),
    }
    steps: list[tuple[int, str, int, int]] = []
    sentences: list[str] = []
    m_lo, m_hi = opts.mul_range
    if "*" in opts.ops and rng.random() < opts.mul_opening:
        a = rng.randint(max(m_lo, lo, 1), max(m_lo, min(m_hi + 3, hi // m_lo)))
        b = rng.randint(m_lo, max(m_lo, min(m_hi + 3, hi // a)))
        v = a * b
        steps.append((a, "*", b, v))
        sentences.append(rng.choice(OPENINGS_MUL).format(a=a, b=b, **fill))
    else:
        v = rng.randint(max(lo, 1), hi)
        sentences.append(rng.choice(OPENINGS_PLAIN).format(a=v, **fill))
    while len(steps) < n_steps:
        feasible = _feasible_ops(v, opts)
        if not feasible:  # cannot happen for sane ranges; restart deterministically from this rng
            return _sample_problem(rng, opts)
        op, limit = rng.choice(feasible)
        b = _sample_operand(rng, op, v, limit, opts)
        c = apply_op(v, op, b)
        phrase = rng.choice(PHRASES[op])
        friend = rng.choice(FRIENDS)
        sentences.append(phrase.format(b=b, friend=friend, Friend=friend[0].upper() + friend[1:], **fill))
        steps.append((v, op, b, c))
        v = c
    sentences.append(rng.choice(QUESTIONS).format(**fill))
    question = " ".join(sentences)
    cot = " ".join(format_equation(a, op, b, c, opts.cot_style) for a, op, b, c in steps)
    return {
        "question": question,
        "cot": cot,
        "answer": str(v),
        "answer_value": v,
        "intermediates": [c for _, _, _, c in steps],
        "operations": [op for _, op, _, _ in steps],
        "operands": [[a, b] for a, _, b, _ in steps],
        "steps": len(steps),
    }


def generate_problems(n: int, seed: int, options: SyntheticOptions | None = None, **overrides: Any) -> Dataset:
    """`n` problems from `seed` as a `datasets.Dataset`.

    Fields: `id` ("syn-{seed}-{i}"), `question`, `cot`, `answer` (plain number string, no
    "####"), `answer_value` (int), `intermediates` (list[int], the result of every step; the last
    is the answer), `operations` (list[str]), `operands` (list[[a, b]]), `steps` (int),
    `gsm8k_answer` ("#### N", what a GSM8K scorer reads).

    Args:
        n: number of problems (>= 0).
        seed: the only source of randomness; same seed and options → same problems.
        options: a `SyntheticOptions`; keyword `overrides` replace its fields.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    opts = options or SyntheticOptions()
    if overrides:
        opts = SyntheticOptions(**{**asdict(opts), **overrides})
    rng = random.Random(f"nnsight-codi-synthetic/{seed}")
    rows: dict[str, list[Any]] = {k: [] for k in (
        "id", "question", "cot", "answer", "answer_value", "intermediates", "operations", "operands",
        "steps", "gsm8k_answer")}
    for i in range(n):
        p = _sample_problem(rng, opts)
        p["id"] = f"syn-{seed}-{i}"
        p["gsm8k_answer"] = f"#### {p['answer']}"
        for k in rows:
            rows[k].append(p[k])
    return Dataset.from_dict(rows)


def check_disjoint(a: Dataset, b: Dataset) -> None:
    """Raise `ValueError` if any question text appears in both datasets."""
    shared = set(a["question"]) & set(b["question"])
    if shared:
        raise ValueError(f"{len(shared)} questions appear in both splits, e.g. {sorted(shared)[0]!r}")


def make_train_test(n_train: int, n_test: int, train_seed: int = 0, test_seed: int = 1_000_003,
                    options: SyntheticOptions | None = None, **overrides: Any) -> DatasetDict:
    """Train and test splits from two different seeds, checked disjoint by question text.

    Train problems whose question also occurs in the test split are dropped (so the train
    split may be slightly smaller than `n_train`); the test split is kept whole.
    """
    if train_seed == test_seed:
        raise ValueError(f"train_seed and test_seed must differ (both {train_seed})")
    test = generate_problems(n_test, test_seed, options, **overrides)
    train = generate_problems(n_train, train_seed, options, **overrides)
    test_q = set(test["question"])
    if any(q in test_q for q in train["question"]):
        train = train.filter(lambda q: q not in test_q, input_columns="question")
    check_disjoint(train, test)
    return DatasetDict({"train": train, "test": test})


def template_words() -> list[str]:
    """Every word and symbol the generator can emit (for building a word-level vocabulary)."""
    texts: list[str] = [*OPENINGS_PLAIN, *OPENINGS_MUL, *QUESTIONS, ANSWER_PREFIX, *FRIENDS, *ITEMS, *CONTAINERS]
    for phrases in PHRASES.values():
        texts.extend(phrases)
    for name, P, o in NAMES:
        texts.extend([name, P, P.lower(), o, "his", "her"])
    for friend in FRIENDS:
        texts.append(friend[0].upper() + friend[1:])
    words: set[str] = set(COT_SYMBOLS)
    for text in texts:
        text = re.sub(r"\{[^}]*\}", " ", text)
        words.update(re.findall(r"\w+|[^\w\s]+", text))
    return sorted(w for w in words if not w.isdigit())
