"""Grid search over (schedule, layer, coefficient) on a dev split, resumable.

Each finished cell is appended as one JSON line to the grid file (after a header line holding
the grid's fingerprint), so a killed grid — local or on NDIF — resumes at the next cell when
rerun with the same arguments; a grid file from other settings is refused.

Example:
    >>> rows = [{"schedule": "single", "layer": 1, "coef": 2.0, "accuracy": 0.5, "reasoning_rate": 0.1},
    ...         {"schedule": "single", "layer": 2, "coef": 1.0, "accuracy": 0.5, "reasoning_rate": 0.4}]
    >>> best_points(rows)["single"]["layer"]
    2
    >>> most_chains_points(rows)["single"]["coef"]
    1.0
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ..models.fingerprint import WEIGHTS_KEY, model_weights
from ..store.fingerprints import diff_fingerprints, mismatch_summary
from .cot_accuracy import check_condition, evaluate_conditions
from .cot_steering import SCHEDULES, Condition, check_schedule

if TYPE_CHECKING:
    from nnsight import TransformersModel


def array_digest(array) -> str | None:
    """sha256 (16 hex digits) of an array's shape, dtype and bytes (None for None)."""
    if array is None:
        return None
    a = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()[:16]


def grid_cells(schedules: Sequence[str], layers: Sequence[int], coefs: Sequence[float]) -> list[Condition]:
    """Every (schedule, layer, coefficient) condition of the grid, schedule-major (schedules checked first)."""
    for s in schedules:
        check_schedule(s)
    return [Condition(s, int(l), float(c)) for s in schedules for l in layers for c in coefs]


def read_grid(path: str | Path) -> tuple[dict | None, list[dict]]:
    """`(header fingerprint, finished rows)` of a grid file (a torn last line is ignored)."""
    path = Path(path)
    if not path.exists():
        return None, []
    header, rows = None, []
    for line in path.read_text().splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if "grid" in obj:
            header = obj["grid"]
        else:
            rows.append(obj)
    return header, rows


def run_grid(model: TransformersModel, dataset, vectors, path: str | Path, schedules: Sequence[str] = SCHEDULES,
             layers: Sequence[int] = (), coefs: Sequence[float] = (), fingerprint: dict | None = None,
             progress: bool = True, fork: bool = True, **eval_kwargs: Any) -> list[dict]:
    """Evaluate every cell on `dataset`, skipping cells already in `path`; return all rows.

    Rows: `{schedule, layer, coef, accuracy, reasoning_rate, n, correct}` (`correct`: 0/1 per example).

    With `fork` (greedy, local runs; sampled or remote grids run cell by cell), the `single` and
    `continuous` cells of one (layer, coef) share their prompt forward and first token — both steer
    the prompt forward alike — so they are evaluated together (`evaluate_conditions`), with answers
    bit-identical to evaluating them apart. Rows are written in cell order all the same: a sibling's
    row waits in memory until its turn (a kill loses at most those waiting rows, which a rerun
    recomputes).
    """
    cells = grid_cells(schedules, layers, coefs)
    if not cells:
        raise ValueError("the grid is empty: give at least one schedule, layer and coefficient")
    for cell in cells:  # every layer is checked before any work
        check_condition(model, cell, vectors)
    path = Path(path)
    current = {**(fingerprint or {}), WEIGHTS_KEY: model_weights(model), "vector_table": array_digest(vectors)}
    current = json.loads(json.dumps(current, default=str))
    header, rows = read_grid(path)
    diff = diff_fingerprints(header, current) if header is not None else []
    if diff and header is not None:
        raise ValueError(f"grid file {path} was written with other settings ({mismatch_summary(header, current)}): "
                         "use another path or delete it")
    if header is not None:
        current = header  # equal up to unknown keys: keep the file's own header
    path.parent.mkdir(parents=True, exist_ok=True)
    # rewrite header + finished rows: drops a line torn by a kill, so appends start on a fresh line
    canonical = "".join(json.dumps(x) + "\n" for x in [{"grid": current}, *rows])
    if not path.exists() or path.read_text() != canonical:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(canonical)
        tmp.replace(path)
    done = {(r["schedule"], r["layer"], r["coef"]) for r in rows}
    todo = [c for c in cells if (c.name, c.layer, c.coef) not in done]
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="grid", unit="cell", disable=not progress)
    fork = fork and eval_kwargs.get("greedy", True) and not eval_kwargs.get("remote")  # else nothing is shared
    waiting: dict[Condition, dict] = {}  # rows computed with an earlier cell, written at their turn
    for k, cell in enumerate(todo):
        if cell not in waiting:
            siblings = list(dict.fromkeys(c for c in todo[k + 1:] if c != cell and c not in waiting
                                          and (c.layer, c.coef) == (cell.layer, cell.coef))) if fork else []
            results = evaluate_conditions(model, dataset, [cell, *siblings], vectors, progress=False, fork=fork,
                                          **eval_kwargs)
            for res in results:
                waiting[res.condition] = {
                    "schedule": res.condition.name, "layer": res.condition.layer, "coef": res.condition.coef,
                    "accuracy": res.accuracy, "reasoning_rate": res.reasoning_rate, "n": res.n,
                    "correct": [int(c) for c in res.correct]}
        row = waiting.pop(cell)
        with open(path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        rows.append(row)
        bar.update(1)
    bar.close()
    wanted = {(c.name, c.layer, c.coef) for c in cells}
    return [r for r in rows if (r["schedule"], r["layer"], r["coef"]) in wanted]


def _best_per_schedule(rows: Sequence[dict], first: str, second: str) -> dict[str, dict]:
    """Per schedule, the row maximising `(row[first], row[second], -|coef|, -layer)`."""
    best: dict[str, dict] = {}
    for r in rows:
        cur = best.get(r["schedule"])
        if cur is None or max(cur, r, key=lambda x: (x[first], x[second], -abs(x["coef"]), -x["layer"])) is r:
            best[r["schedule"]] = r
    return best


def best_points(rows: Sequence[dict]) -> dict[str, dict]:
    """Per schedule, the row with the highest dev accuracy (ties: higher reasoning rate, then smaller |coef|)."""
    return _best_per_schedule(rows, "accuracy", "reasoning_rate")


def most_chains_points(rows: Sequence[dict]) -> dict[str, dict]:
    """Per schedule, the row where the most outputs write a chain (ties: higher accuracy, then smaller |coef|).

    The accuracy-selected point of `best_points` can be a weak one that never makes the model
    reason; this is the point that tests whether the vector carries "reason step by step" at all.
    """
    return _best_per_schedule(rows, "reasoning_rate", "accuracy")
