"""Synthetic problems: determinism, disjoint splits, and values recomputed independently."""

import json
import re

import pytest

from nnsight_codi.data.gsm8k_aug import load_gsm8k_aug, normalize_answer
from nnsight_codi.data.synthetic import (
    SyntheticOptions,
    check_disjoint,
    generate_problems,
    make_train_test,
    template_words,
)

OPTS = dict(value_range=(0, 99), min_steps=2, max_steps=4, add_range=(1, 9), mul_range=(2, 4))


def test_same_seed_same_problems():
    a = generate_problems(200, seed=7, **OPTS)
    b = generate_problems(200, seed=7, **OPTS)
    assert a.to_dict() == b.to_dict()
    c = generate_problems(200, seed=8, **OPTS)
    assert list(a["question"]) != list(c["question"])


def test_fields():
    ds = generate_problems(5, seed=0)
    for col in ("id", "question", "cot", "answer", "intermediates", "steps", "gsm8k_answer", "operations"):
        assert col in ds.column_names
    row = ds[0]
    assert row["gsm8k_answer"] == f"#### {row['answer']}"
    assert row["id"] == "syn-0-0"


def _recompute(a: int, op: str, b: int) -> int:
    # deliberately independent of the generator's apply_op
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a // b}[op]()


@pytest.mark.parametrize("style", ["spaced", "compact"])
def test_values_consistent(style):
    ds = generate_problems(500, seed=3, cot_style=style, **OPTS)
    pattern = r"<<\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*>>"
    seen_ops = set()
    for row in ds:
        eqs = re.findall(pattern, row["cot"])
        assert len(eqs) == row["steps"] == len(row["intermediates"])
        assert 2 <= row["steps"] <= 4
        prev = None
        for (a, op, b, c), inter in zip(eqs, row["intermediates"]):
            a, b, c = int(a), int(b), int(c)
            if op == "/":
                assert a % b == 0
            assert _recompute(a, op, b) == c == inter
            if prev is not None:
                assert a == prev  # each step continues from the previous result
            assert 0 <= c <= 99 and 0 <= a <= 99
            prev = c
            seen_ops.add(op)
        assert row["answer"] == str(row["intermediates"][-1]) == str(row["answer_value"])
        # the numbers of the question are the operands the CoT uses
        numbers = [int(x) for x in re.findall(r"\d+", row["question"])]
        first_a = int(eqs[0][0])
        assert first_a in numbers
        for _, _, b, _ in eqs:
            assert int(b) in numbers
        if style == "compact":
            assert " " not in row["cot"].replace(">> <<", "")
    assert seen_ops == {"+", "-", "*", "/"}


def test_train_test_disjoint():
    splits = make_train_test(3000, 300, train_seed=1, test_seed=2, **OPTS)
    assert not set(splits["train"]["question"]) & set(splits["test"]["question"])
    assert len(splits["test"]) == 300
    with pytest.raises(ValueError):
        make_train_test(10, 10, train_seed=5, test_seed=5)
    ds = generate_problems(10, seed=0)
    with pytest.raises(ValueError, match="both splits"):
        check_disjoint(ds, ds)


def test_bad_options():
    with pytest.raises(ValueError):
        SyntheticOptions(min_steps=3, max_steps=2)
    with pytest.raises(ValueError):
        SyntheticOptions(ops="+^")
    with pytest.raises(ValueError):
        generate_problems(-1, seed=0)


def test_template_words_cover_problems():
    words = set(template_words())
    for q in generate_problems(300, seed=4, **OPTS)["question"]:
        for w in re.findall(r"\w+|[^\w\s]+", q):
            assert w.isdigit() or w in words, w


def test_gsm8k_aug_loader(tmp_path):
    rows = [{"question": "A?", "cot": "<<2*3=6>>", "answer": "#### 6"},
            {"question": "B?", "cot": "<<1-3=-2>>", "answer": "-2"},
            {"question": "C?", "cot": "<<1,000+1=1001>>", "answer": "1,001"}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_gsm8k_aug(path)
    assert list(ds["answer"]) == ["6", "1001"]  # negative answers are dropped, as in the reference
    assert len(load_gsm8k_aug(path, keep_non_numeric=True)) == 3
    (tmp_path / "list.json").write_text(json.dumps(rows))
    assert len(load_gsm8k_aug(tmp_path / "list.json")) == 2
    with pytest.raises(FileNotFoundError):
        load_gsm8k_aug(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad" / "x.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"question": "x", "answer": "1"}))
    with pytest.raises(ValueError, match="cot"):
        load_gsm8k_aug(bad)
    assert normalize_answer("so #### 1,234") == "1234"
