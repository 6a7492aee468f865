"""`predictions.jsonl`: one record per example, one writer, one schema (`eval`, `steer`, `cot-vectors eval`).

Every line is a JSON object with the fields of `Prediction`:

| field             | type            | meaning                                                        |
|-------------------|-----------------|----------------------------------------------------------------|
| `id`              | str             | the example's id in its dataset                                |
| `question`        | str             | the question as given                                          |
| `prediction_text` | str             | the model's output text                                        |
| `prediction`      | number or null  | the number read from it (`data.scoring`; null: none found)     |
| `gold`            | number or null  | the gold answer (null: not a finite number)                    |
| `correct`         | bool            | prediction == gold, as the reference scores it                 |
| `baseline_correct`| bool, optional  | `steer`: the unsteered run's `correct` on the same example     |
| `writes_chain`    | bool, optional  | `cot-vectors eval`: the output writes a chain of thought       |

The optional fields are left out of a line where a command has none. Non-finite numbers are written
as null (valid JSON) and read back as NaN.

Example:
    >>> row = Prediction("7", "1+1?", "The answer is: 2", 2.0, 2.0, True, baseline_correct=False).to_json()
    >>> list(row), row["prediction"], row["baseline_correct"]
    (['id', 'question', 'prediction_text', 'prediction', 'gold', 'correct', 'baseline_correct'], 2.0, False)
    >>> check_prediction_row(row) == Prediction.from_json(row)
    True
    >>> Prediction("8", "?", "no number", float("inf"), 3.0, False).to_json()["prediction"] is None
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREDICTIONS_FILE = "predictions.jsonl"

REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "question": (str,), "prediction_text": (str,), "prediction": (int, float, type(None)),
    "gold": (int, float, type(None)), "correct": (bool,)}
"""The fields every line has, with the JSON types each may take."""

OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {"baseline_correct": (bool,), "writes_chain": (bool,)}
"""The condition-specific fields a line may have."""


@dataclass
class Prediction:
    """One example's result (one line of `predictions.jsonl`; the module doc lists the fields)."""

    id: str
    question: str
    prediction_text: str
    prediction: float
    gold: float
    correct: bool
    baseline_correct: bool | None = None
    writes_chain: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The line's object: optional fields only where set, non-finite numbers as None (null)."""
        row = {name: getattr(self, name) for name in REQUIRED_FIELDS}
        row["id"] = str(row["id"])
        row["prediction"], row["gold"] = _finite(self.prediction), _finite(self.gold)
        row["correct"] = bool(row["correct"])
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                row[name] = bool(value)
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Prediction:
        """A `Prediction` from a line's object (null numbers become NaN), checked (`check_prediction_row`)."""
        return check_prediction_row(row)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def check_prediction_row(row: Any) -> Prediction:
    """Validate one line's object against the schema; return it as a `Prediction`. Bad rows: ValueError.

    >>> check_prediction_row({"id": "1", "question": "q", "prediction_text": "t", "prediction": None, "gold": 2,
    ...                       "correct": False, "text": "t"})
    Traceback (most recent call last):
    ...
    ValueError: predictions.jsonl: unknown field(s) ['text']
    """
    if not isinstance(row, dict):
        raise ValueError(f"{PREDICTIONS_FILE}: a line must hold an object, got {type(row).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise ValueError(f"{PREDICTIONS_FILE}: missing field(s) {missing}")
    unknown = sorted(set(row) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise ValueError(f"{PREDICTIONS_FILE}: unknown field(s) {unknown}")
    for name, value in row.items():
        types = {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{PREDICTIONS_FILE}: {name} must be {' or '.join(t.__name__ for t in types)}, "
                             f"got {value!r}")
    def number(value: Any) -> float:
        return math.nan if value is None else float(value)

    return Prediction(row["id"], row["question"], row["prediction_text"], number(row["prediction"]),
                      number(row["gold"]), row["correct"], row.get("baseline_correct"), row.get("writes_chain"))


def write_predictions(directory: str | Path, predictions: Iterable[Prediction]) -> Path:
    """Write `directory/predictions.jsonl` (replacing one there), one `Prediction.to_json` per line; return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PREDICTIONS_FILE
    with open(path, "w") as handle:
        for p in predictions:
            handle.write(json.dumps(p.to_json()) + "\n")
    return path


def read_predictions(path: str | Path) -> list[Prediction]:
    """The records of a `predictions.jsonl` (or of the one in directory `path`), each checked."""
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    return [check_prediction_row(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
