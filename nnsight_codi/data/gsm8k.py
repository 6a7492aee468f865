"""GSM8K shipped with the package (`nnsight_codi/assets/gsm8k/`, MIT, OpenAI 2021): no download needed.

The test split (1,319 problems) and the train split (7,473) as gzip-compressed jsonl lines
`{"question", "answer"}`, the licence beside them. `load_eval_dataset("gsm8k")` reads the Hub's
`openai/gsm8k` when it is reachable and this copy otherwise; `"gsm8k:shipped"` always reads this copy,
`"gsm8k:hub"` always the Hub. The rows are the same either way.

Example:
    >>> rows = read_shipped("test")
    >>> len(rows), rows[0]["answer"].split("####")[-1].strip()
    (1319, '18')
    >>> shipped_file("test").name, (GSM8K_DIR / "LICENSE").is_file()
    ('test.jsonl.gz', True)
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

GSM8K_DIR = Path(__file__).resolve().parents[1] / "assets" / "gsm8k"
SPLITS = ("test", "train")


def shipped_file(split: str = "test") -> Path:
    """The shipped `<split>.jsonl.gz` (ValueError for a split that is not shipped)."""
    if split not in SPLITS:
        raise ValueError(f"GSM8K split {split!r} is not shipped; use one of {SPLITS}")
    return GSM8K_DIR / f"{split}.jsonl.gz"


def read_shipped(split: str = "test") -> list[dict[str, Any]]:
    """The shipped split's rows, in file order."""
    with gzip.open(shipped_file(split), "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_shipped(split: str = "test"):
    """The shipped split as a `datasets.Dataset` with `question`, `answer` (no cache, no network)."""
    from datasets import Dataset

    rows = read_shipped(split)
    return Dataset.from_dict({"question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows]})
