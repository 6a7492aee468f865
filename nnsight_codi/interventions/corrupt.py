"""Corrupted prompts for activation patching: the same synthetic problem with one operand changed.

The synthetic generator (`data.synthetic`) writes every operand as its own number in the question, in
chain order: start value (or the two factors of a "boxes of" opening), then one operand per
operation. `corrupt_problem` changes the first number and replays the chain, keeping divisions exact
and values non-negative; it returns None when no small change gives a different valid answer.

Example:
    >>> corrupt_problem("Tom has 12 pens . He gets 4 more . How many pens does Tom have ?", ["+"])
    ('Tom has 13 pens . He gets 4 more . How many pens does Tom have ?', 17)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..data.synthetic import apply_op

NUMBER = re.compile(r"(?<![\w.])\d+(?![\w.]|\.\d)")
DELTAS = (1, -1, 2, -2, 3, -3)


def replay(numbers: Sequence[int], operations: Sequence[str]) -> int | None:
    """The answer of a chain `numbers[0] op0 numbers[1] op1 …`, or None if a step is invalid."""
    if len(numbers) != len(operations) + 1:
        return None
    value = numbers[0]
    for op, b in zip(operations, numbers[1:]):
        try:
            value = apply_op(value, op, b)
        except ValueError:
            return None
        if value < 0:
            return None
    return value


def corrupt_problem(question: str, operations: Sequence[str], value_max: int = 999) -> tuple[str, int] | None:
    """`(corrupted question, its answer)` with the first number changed by a small delta, or None."""
    matches = list(NUMBER.finditer(question))
    numbers = [int(m.group()) for m in matches]
    clean = replay(numbers, operations)
    if clean is None:
        return None
    first = matches[0]
    for delta in DELTAS:
        new = numbers[0] + delta
        if new < 1:
            continue
        answer = replay([new] + numbers[1:], operations)
        if answer is None or answer == clean or answer > value_max:
            continue
        return question[: first.start()] + str(new) + question[first.end():], answer
    return None
