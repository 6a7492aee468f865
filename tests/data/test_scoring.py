"""Answer extraction and gold parsing on real GSM8K lines (the first 20 test lines in fixtures/; MIT),
and the GSM8K copy shipped with the package."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nnsight_codi.data.eval_datasets import DatasetError, load_eval_dataset
from nnsight_codi.data.scoring import extract_gold, extract_prediction, is_correct

GSM8K = Path(__file__).resolve().parent / "fixtures" / "gsm8k_test_head20.jsonl"


def first_lines(n):
    with open(GSM8K) as handle:
        return [json.loads(next(handle)) for _ in range(n)]


def test_gold_on_real_gsm8k_lines():
    rows = first_lines(3)
    assert [extract_gold(r["answer"]) for r in rows] == [18.0, 3.0, 70000.0]
    # the worked solution itself, scored as a prediction, yields the gold (last number wins)
    assert [extract_prediction(r["answer"]) for r in rows] == [18.0, 3.0, 70000.0]


@pytest.mark.parametrize("text,value", [
    ("The answer is: 18", 18.0), ("The answer is: 1,234", 1234.0), ("-7 degrees", -7.0),
    ("3.5 and then 4.", 4.0), ("costs $12.50", 12.5), ("no number", math.inf), ("", math.inf),
])
def test_prediction_extraction(text, value):
    assert extract_prediction(text) == value


def test_correctness_is_exact_float_equality():
    assert is_correct(extract_prediction("The answer is: 18"), extract_gold("#### 18"))
    assert not is_correct(extract_prediction("The answer is: 18.5"), extract_gold("#### 18"))
    assert not is_correct(extract_prediction("nothing"), extract_gold("#### 18"))


def test_load_local_gsm8k_file():
    ds = load_eval_dataset(GSM8K, limit=5)
    assert len(ds) == 5 and ds["id"][0] == f"{GSM8K.stem}-0"
    assert ds["question"][0].startswith("Janet")


def test_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_eval_dataset(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"q": "x", "a": "1"}) + "\n")
    with pytest.raises(DatasetError, match="question field"):
        load_eval_dataset(bad)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_eval_dataset("not-a-dataset")
