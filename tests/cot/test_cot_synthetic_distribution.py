"""`cot-vectors … --dataset synthetic` follows the instruct model's recorded training distribution
(`instruct.json` `synthetic_options`), with `--min-steps/--max-steps/--value-max/--ops` on top."""

from __future__ import annotations

import argparse
import json

import pytest

from nnsight_codi.cli import main
from nnsight_codi.commands.cot_vectors import _questions
from nnsight_codi.cot.questions import load_questions
from nnsight_codi.data.eval_datasets import synthetic_options
from nnsight_codi.loading import load_model
from nnsight_codi.models.model_sources import TINY_INSTRUCT_DIR


@pytest.fixture(scope="module")
def tiny_instruct():
    return load_model("tiny-instruct")


def _args(**kw) -> argparse.Namespace:
    base = {"dataset": "synthetic", "split": "test", "limit": 40, "seed": 0, "min_steps": None, "max_steps": None,
            "value_max": None, "ops": None}
    return argparse.Namespace(**(base | kw))


def test_questions_follow_instruct_json(tiny_instruct):
    recorded = json.loads((TINY_INSTRUCT_DIR / "instruct.json").read_text())["synthetic_options"]
    options = synthetic_options(tiny_instruct)
    assert options == {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
    ds = _questions(_args(), tiny_instruct)
    assert set(ds["steps"]) <= set(range(recorded["min_steps"], recorded["max_steps"] + 1))
    assert max(max(x) for x in ds["intermediates"]) <= recorded["value_range"][1]
    assert list(ds["question"]) == list(load_questions("synthetic", split="test", limit=40, **options)["question"])
    # the generator's own default is another (harder) distribution: the recorded one is not a no-op
    assert list(ds["question"]) != list(load_questions("synthetic", split="test", limit=40)["question"])
    harder = _questions(_args(max_steps=4, min_steps=4, value_max=150), tiny_instruct)
    assert set(harder["steps"]) == {4}


def test_eval_scores_the_tiny_instruct_model_on_its_distribution(capsys):
    """README: step by step 98.8%, immediately 38.6% (1,000 problems); 8% before this fix."""
    acc = {}
    for condition in ("cot", "direct"):
        assert main(["cot-vectors", "eval", "--model", "tiny-instruct", "--condition", condition, "--dataset",
                     "synthetic", "--limit", "40", "--json"]) == 0
        acc[condition] = json.loads(capsys.readouterr().out)["accuracy"]
    assert acc["cot"] >= 0.9 and acc["direct"] <= 0.7


def test_difficulty_flags_need_synthetic_data(tmp_path, capsys):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "1 + 1 ?", "answer": "2"}) + "\n")
    rc = main(["cot-vectors", "eval", "--model", "tiny-instruct", "--condition", "cot", "--dataset", str(data),
               "--max-steps", "3"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert rc != 0 and len(errors) == 1 and "synthetic only" in errors[0]


def test_extract_records_the_distribution_and_refuses_another_on_resume(tmp_path, capsys):
    store = tmp_path / "v.zarr"
    common = ["cot-vectors", "extract", "--model", "tiny-instruct", "--limit", "3", "--max-new-tokens", "8",
              "--out", str(store)]
    assert main([*common, "--json"]) == 0
    capsys.readouterr()
    from nnsight_codi.store import open_store

    recorded = json.loads((TINY_INSTRUCT_DIR / "instruct.json").read_text())["synthetic_options"]
    assert open_store(store).attrs["config"]["synthetic"] == recorded
    assert main([*common, "--max-steps", "2"]) != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "max_steps" in errors[0]
