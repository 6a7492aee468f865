"""Evaluation datasets by name or path, normalised to `id`, `question`, `answer` (gold text).

`spec` may be:
- `"gsm8k"`: GSM8K (`openai/gsm8k`, config `main`) from the Hub when it is reachable, else the copy
  shipped with the package (test and train splits, `nnsight_codi.data.gsm8k`); `"gsm8k:shipped"`
  and `"gsm8k:hub"` choose one explicitly. The rows and their ids are the same either way;
- a local `.json` / `.jsonl` / `.parquet` file (or a directory of them) with `question` and
  `answer` fields (the GSM8K format: the gold number after `####`);
- `"synthetic"`: the seeded synthetic arithmetic problems (`seed`, `size` options; difficulty
  options as `SyntheticOptions` fields — `synthetic_options(model)` gives the distribution a
  model was trained on, recorded in its codi.json).

Example:
    >>> ds = load_eval_dataset("synthetic", limit=3, seed=1)
    >>> {"id", "question", "answer"} <= set(ds.column_names)
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset, load_dataset

from .gsm8k import SPLITS, load_shipped
from .network import offline_reason
from .synthetic import SyntheticOptions, generate_problems

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
HUB_NAMES = {"gsm8k": ("openai/gsm8k", "main")}
GSM8K_SPECS = ("gsm8k", "gsm8k:shipped", "gsm8k:hub")
QUESTION_FIELDS = ("question", "question_concat", "instruction")
ANSWER_FIELDS = ("answer", "Answer", "final_ans", "response")


class DatasetError(ValueError):
    """A dataset file is missing or lacks the fields evaluation needs."""


def load_eval_dataset(spec: str | Path, split: str = "test", limit: int | None = None, seed: int = 1,
                      size: int = 1000, **options: Any) -> Dataset:
    """Load `spec` as a Dataset with at least `id`, `question`, `answer` (see module doc)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    spec = str(spec)
    if spec == "synthetic":
        n = limit if limit is not None else size
        return generate_problems(n, seed=seed, **options)
    path = Path(spec).expanduser()
    if spec in GSM8K_SPECS:
        ds, spec = _load_gsm8k(spec, split), "gsm8k"
    elif path.exists():
        ds = _load_local(path, split)
    elif spec.endswith(tuple(FILE_BUILDERS)):
        raise DatasetError(f"dataset file {path} not found")
    else:
        raise DatasetError(
            f"unknown dataset {spec!r}: use 'gsm8k' (or 'gsm8k:shipped', 'gsm8k:hub'), 'synthetic', "
            "or a local .json/.jsonl/.parquet file"
        )
    ds = _normalise(ds, spec)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds


def _load_gsm8k(spec: str, split: str) -> Dataset:
    """GSM8K `split` from the Hub (`gsm8k:hub`, or `gsm8k` when the Hub is reachable) or the shipped copy."""
    if spec == "gsm8k:shipped" or (spec == "gsm8k" and split in SPLITS and offline_reason() is not None):
        return load_shipped(split)
    if spec == "gsm8k:hub" and (reason := offline_reason()) is not None:
        raise DatasetError(f"gsm8k:hub: the Hub cannot be reached ({reason}); use 'gsm8k' or 'gsm8k:shipped' "
                           "for the copy shipped with the package")
    name, config = HUB_NAMES["gsm8k"]
    return load_dataset(name, config, split=split)


def synthetic_options(model: object, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The synthetic-problem options a model was trained on (a CODI model's `codi.json` extra, an
    instruct LM's `instruct.json` beside its weights, else `{}`), with `overrides`
    (`SyntheticOptions` fields) on top; checked by `SyntheticOptions`.

    Example:
        >>> synthetic_options(None, {"max_steps": 4, "value_range": [0, 50]})
        {'max_steps': 4, 'value_range': (0, 50)}
    """
    config = getattr(model, "codi_config", None)
    if config is not None:
        options = dict(config.extra.get("synthetic_options") or {})
    else:
        options = dict(_instruct_meta(model).get("synthetic_options") or {})
    options.update(overrides or {})
    for key in ("value_range", "add_range", "mul_range"):
        if key in options:
            options[key] = tuple(options[key])
    SyntheticOptions(**options)  # a bad combination fails here, before any work
    return options


def _instruct_meta(model: object) -> dict[str, Any]:
    """`instruct.json` of a plain LM loaded from a local directory (the tiny instruct LM, a
    `train_tiny_instruct` output), else `{}`.
    """
    if model is None:
        return {}
    lm = getattr(model, "_module", model)
    name = getattr(lm, "name_or_path", None) or getattr(getattr(lm, "config", None), "_name_or_path", None)
    path = Path(str(name)) / "instruct.json" if name else None
    if path is None or not path.is_file():
        return {}
    return json.loads(path.read_text())


def _load_local(path: Path, split: str) -> Dataset:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in FILE_BUILDERS and split in p.stem)
        if not files:
            files = sorted(p for p in path.iterdir() if p.suffix in FILE_BUILDERS)
        if not files:
            raise DatasetError(f"{path}: no .json/.jsonl/.parquet files")
    else:
        files = [path]
    builders = {FILE_BUILDERS.get(p.suffix) for p in files}
    if None in builders or len(builders) != 1:
        raise DatasetError(f"{path}: unsupported file type(s) {[p.suffix for p in files]}; use .json/.jsonl/.parquet")
    builder = builders.pop()
    assert builder is not None  # checked above
    try:
        return load_dataset(builder, data_files=[str(p) for p in files], split="train")
    except Exception as err:
        raise DatasetError(f"{path}: cannot read dataset ({type(err).__name__}: {err})") from err


def _normalise(ds: Dataset, spec: str) -> Dataset:
    question = next((f for f in QUESTION_FIELDS if f in ds.column_names), None)
    answer = next((f for f in ANSWER_FIELDS if f in ds.column_names), None)
    if question is None or answer is None:
        raise DatasetError(
            f"{spec}: needs a question field ({'/'.join(QUESTION_FIELDS)}) and an answer field "
            f"({'/'.join(ANSWER_FIELDS)}); found {ds.column_names}"
        )
    if question != "question":
        ds = ds.rename_column(question, "question")
    if answer != "answer":
        ds = ds.rename_column(answer, "answer")
    if "id" not in ds.column_names:
        ds = ds.add_column("id", [f"{Path(spec).stem}-{i}" for i in range(len(ds))])
    elif ds.features["id"].dtype != "string":
        ds = ds.map(lambda row: {"id": str(row["id"])})
    return ds
