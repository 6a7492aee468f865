r"""Answer extraction and scoring exactly as the CODI reference (codi.md §1 "Scoring").

- Prediction: remove commas, take the **last** match of `-?\d+\.?\d*`, as float; no match → `inf`.
  (Training's teacher chains end "The answer is N": `after="answer is"` takes the first number after the
  last such phrase when there is one, else the last number, as the training evaluation does.)
- Gold: the text after the last `####` (the whole text if there is none), commas removed, as float.
- Correct: exact float equality.

Example:
    >>> extract_prediction("The answer is: 1,234.")
    1234.0
    >>> extract_gold("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18")
    18.0
"""

from __future__ import annotations

import math
import re

NUMBER = re.compile(r"-?\d+\.?\d*")


def extract_prediction(text: str, after: str | None = None) -> float:
    """The last number in `text` (commas removed) as a float; `inf` if there is none. With `after`, the first
    number after the last occurrence of that phrase, when it occurs and a number follows it.

    Example:
        >>> extract_prediction("The answer is 12. Check: 12 - 3 = 9", after="answer is")
        12.0
    """
    text = text.replace(",", "")
    if after is not None and (start := text.rfind(after)) >= 0 and (match := NUMBER.search(text, start)):
        return float(match.group(0))
    matches = NUMBER.findall(text)
    if not matches:
        return math.inf
    return float(matches[-1])


def extract_gold(answer: str | int | float) -> float:
    """The gold answer as a float: a number itself, or the number after the last `####`."""
    if isinstance(answer, (int, float)):
        return float(answer)
    tail = str(answer).split("####")[-1].replace(",", "").strip()
    try:
        return float(tail)
    except ValueError as err:
        raise ValueError(f"gold answer {answer!r} does not end in a number") from err


def is_correct(prediction: float, gold: float) -> bool:
    """Whether the prediction equals the gold answer exactly."""
    return prediction == gold
