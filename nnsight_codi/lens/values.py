"""Which numbers of a problem a lens read-out shows: ground truth, target sets, detection, settling.

Ground truth per problem (`problem_truth`): the final answer, the intermediate results and the
operands in the question. Synthetic problems carry them exactly (`intermediates`); for GSM8K they
come from the answer field's calculator annotations `<<a op b=c>>` (every `c` is a result).

Targets a read-out is scored against (`target_sets`), disjoint by construction:
- `answer`: the final answer;
- `intermediate`: the results before the last, other than the answer;
- `near_miss`: answer ± 1..10, answer × 2, answer ÷ 2 (when whole), other than the above;
- `operand`: the numbers in the question, other than the above.

`token_values` / `hits` score whole spellings only (one token = one number, as a word-level
vocabulary writes them); the lens study scores token ids with `lens.numbers.NumberTokens`, which
adds each value's first token under the model's tokenizer (numbers that BPE splits).

Example:
    >>> t = problem_truth("Tom has 4 boxes with 6 pens each . He loses 3 .", "<<4*6=24>> <<24-3=21>> #### 21")
    >>> t["answer"], t["intermediates"], t["operands"]
    (21.0, [24.0, 21.0], [4.0, 6.0, 3.0])
    >>> sorted(target_sets(t)["intermediate"]), 42.0 in target_sets(t)["near_miss"]
    ([24.0], True)
    >>> one_op_away(7, 21, [3.0]), one_op_away(5, 21, [3.0])
    (True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

from ..data.chains import results

TARGETS = ("intermediate", "answer", "near_miss", "operand")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_number(text: str) -> float:
    """A token or word as a number (`' 52'` → 52.0, `'1,200'` → 1200.0); NaN if it is none."""
    s = str(text).strip().replace("Ġ", "").replace("▁", "").replace(",", "")
    if not s or not re.fullmatch(r"-?\d+(?:\.\d+)?", s):
        return float("nan")
    return float(s)


def question_numbers(question: str) -> list[float]:
    """The numbers written in a question, in order (duplicates kept once)."""
    out: list[float] = []
    for m in _NUMBER.findall(question):
        v = parse_number(m)
        if v == v and v not in out:
            out.append(v)
    return out


def calculator_results(answer_text: str) -> list[float]:
    """Results `c` of GSM8K calculator annotations `<<expr=c>>`, in order."""
    return [parse_number(c) for c in results(answer_text)]


def final_answer(answer_text: str) -> float:
    """The number after `####` (GSM8K), else the last number of the text."""
    if "####" in answer_text:
        tail = answer_text.split("####")[-1].split()
        return parse_number(tail[0]) if tail else float("nan")
    nums = _NUMBER.findall(answer_text)
    return parse_number(nums[-1]) if nums else float("nan")


def problem_truth(question: str, answer_text: str, intermediates: Sequence[float] | None = None) -> dict[str, Any]:
    """`{answer, intermediates, operands}` of one problem (intermediates given, or parsed from
    `<<a op b=c>>` annotations of the answer text).
    """
    inter = [float(x) for x in intermediates] if intermediates is not None else calculator_results(answer_text)
    answer = final_answer(answer_text)
    if answer != answer and inter:
        answer = inter[-1]
    return {"answer": answer, "intermediates": inter, "operands": question_numbers(question)}


def dataset_truth(dataset) -> list[dict[str, Any]]:
    """Ground truth rows (`id`, `answer`, `intermediates`, `operands`) of an eval dataset."""
    rows = []
    has_inter = "intermediates" in dataset.column_names
    for row in dataset:
        answer_text = row.get("gsm8k_answer") or str(row["answer"])
        if has_inter and "####" not in answer_text:
            answer_text = f"#### {row['answer']}"
        t = problem_truth(row["question"], answer_text, row["intermediates"] if has_inter else None)
        rows.append({"id": str(row["id"]), **t})
    return rows


def target_sets(truth: Mapping[str, Any]) -> dict[str, set[float]]:
    """The four disjoint target sets of one problem (module doc)."""
    a = float(truth["answer"])
    inter = {float(x) for x in truth["intermediates"][:-1]} - {a}
    near = {a + d for d in range(-10, 11) if d} | {2 * a}
    if a == a and a % 2 == 0:
        near.add(a / 2)
    near -= inter | {a}
    ops = {float(x) for x in truth["operands"]} - inter - near - {a}
    return {"intermediate": inter, "answer": {a} if a == a else set(), "near_miss": near, "operand": ops}


def token_values(token_strings: Sequence[str]) -> np.ndarray:
    """`[vocab]` the number each token spells (NaN for non-numbers)."""
    return np.array([parse_number(s) for s in token_strings], dtype=np.float64)


def hits(values: np.ndarray, sets: Sequence[AbstractSet[float]], k: int) -> np.ndarray:
    """Does any of the top-`k` read-outs fall in the example's set?

    Args:
        values: `Float[ndarray, "example ... k_all"]` numbers of the read-out tokens (NaN = not a number).
        sets: one target set per example.

    Returns:
        `Bool[ndarray, "example ..."]`.
    """
    out = np.zeros(values.shape[:-1], dtype=bool)
    for i, s in enumerate(sets):
        if s:
            out[i] = np.isin(values[i, ..., :k], list(s)).any(-1)
    return out


def other_problem(items: Sequence[Any], shift: int = 1) -> list[Any]:
    """The chance baseline's pairing: each example scored against another problem's values."""
    n = len(items)
    return [items[(i + shift) % n] for i in range(n)]


def one_op_away(value: float, answer: float, numbers: Iterable[float]) -> bool:
    """Is `answer` one binary operation (+ − × ÷) of `value` with a number from the question?"""
    if value != value or answer != answer:
        return False
    for q in numbers:
        cands = (value + q, value - q, q - value, value * q)
        if any(c == answer for c in cands):
            return True
        if (q and value / q == answer) or (value and q / value == answer):
            return True
    return False


def settle_step(top1: np.ndarray) -> np.ndarray:
    """`Int[ndarray, "example"]`: the first position (0-based along the last axis) after which each
    example's top-1 read-out `[example, step]` no longer changes.
    """
    same_as_last = top1 == top1[:, -1:]
    # first index from which every later entry equals the last
    rev = np.cumprod(same_as_last[:, ::-1], axis=1)[:, ::-1]
    return np.argmax(rev.astype(bool), axis=1)


def truth_sets(truth_rows: Sequence[Mapping[str, Any]]) -> dict[str, list[set[float]]]:
    """`target → [set per example]` for a list of ground-truth rows."""
    per = [target_sets(t) for t in truth_rows]
    return {name: [p[name] for p in per] for name in TARGETS}
