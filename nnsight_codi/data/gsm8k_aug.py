r"""Load GSM8k-Aug style data (question, cot, answer) from local files.

Accepted: `.json` (a list of objects, or JSON lines), `.jsonl`, `.parquet`, `.csv`, or a
directory holding one or more of them (all are concatenated). Nothing is downloaded.

The `answer` field may be a plain number ("18") or GSM8K text ending in "#### 18"; it is
normalised to the number string, as the reference does (`answer.split(' ')[-1]`, `####`
stripped). Rows whose answer is not a non-negative number are dropped unless
`keep_non_numeric=True` (the reference skips them: negatives caused distillation problems).

Example:
    >>> import json, tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "train.jsonl")
    >>> _ = open(p, "w").write(json.dumps({"question": "2+3?", "cot": "<<2+3=5>>", "answer": "#### 5"}) + "\n")
    >>> load_gsm8k_aug(p)[0]["answer"]
    '5'
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets import Dataset, concatenate_datasets, load_dataset

REQUIRED_FIELDS = ("question", "cot", "answer")
_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def normalize_answer(answer: str | int | float) -> str:
    """GSM8K answer text → the final number string: "... #### 1,234" → "1234"."""
    text = str(answer).strip()
    if "####" in text:
        text = text.split("####")[-1].strip()
    text = text.split(" ")[-1].replace(",", "").strip()
    return text


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"dataset path {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in _FORMATS)
        if not files:
            raise FileNotFoundError(f"no .json/.jsonl/.parquet/.csv files in {path}")
        return files
    if path.suffix not in _FORMATS:
        raise ValueError(f"{path}: unsupported extension {path.suffix!r} (use one of {sorted(_FORMATS)})")
    return [path]


def load_gsm8k_aug(path: str | Path, limit: int | None = None, keep_non_numeric: bool = False) -> Dataset:
    """A `Dataset` with at least `question`, `cot`, `answer` (number string) and `id`.

    Args:
        path: a file or a directory of files (see module doc).
        limit: keep only the first `limit` rows (after filtering).
        keep_non_numeric: keep rows whose answer is not a non-negative number.

    Raises:
        FileNotFoundError: the path or files are missing.
        ValueError: unsupported format, unreadable file, or a required field is missing.
    """
    parts = []
    for file in _files(Path(path)):
        try:
            ds = load_dataset(_FORMATS[file.suffix], data_files=str(file), split="train")
        except Exception as err:  # datasets raises several error types for malformed files
            raise ValueError(f"{file}: could not read as {_FORMATS[file.suffix]}: {err}") from err
        missing = [f for f in REQUIRED_FIELDS if f not in ds.column_names]
        if missing:
            raise ValueError(f"{file}: missing field(s) {missing}; found {ds.column_names}")
        parts.append(ds.select_columns([c for c in ds.column_names if c in (*REQUIRED_FIELDS, "id")]))
    ds = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    ds = ds.map(lambda row: {"answer": normalize_answer(row["answer"]), "question": str(row["question"]),
                             "cot": str(row["cot"] or "")})
    if not keep_non_numeric:
        ds = ds.filter(lambda a: bool(_NUMBER.match(a)), input_columns="answer")
    if "id" not in ds.column_names:
        ds = ds.add_column("id", [f"gsm8k-aug-{i}" for i in range(len(ds))])
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds
