"""The CLI: `eval --json --out` on a fabricated CODI model, checked against one-at-a-time answers."""

from __future__ import annotations

import json

import pytest
from factories import make_converted

from nnsight_codi.cli import main
from nnsight_codi.data.eval_datasets import load_eval_dataset
from nnsight_codi.data.scoring import extract_gold, extract_prediction
from nnsight_codi.loading import load_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_converted(tmp_path_factory.mktemp("m"), "gpt2", num_latents=2)


def test_eval_json_and_predictions(model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(model_dir), "--dataset", "synthetic", "--limit", "6", "--batch-size", "4",
                 "--max-new-tokens", "4", "--json", "--out", str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"accuracy", "n", "num_latents", "model"} <= set(summary)
    assert summary["n"] == 6 and summary["num_latents"] == 2
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    codi = load_model(model_dir)
    dataset = load_eval_dataset("synthetic", limit=6)
    for row, question, answer in zip(rows, dataset["question"], dataset["answer"]):
        assert {"id", "question", "prediction_text", "prediction", "gold", "correct"} <= set(row)
        assert row["question"] == question
        assert row["prediction_text"] == codi.answer([question], max_new_tokens=4)[0]  # batch == single
        assert row["gold"] == extract_gold(answer)
        assert row["correct"] == (extract_prediction(row["prediction_text"]) == row["gold"])
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / 6


def test_eval_remote_local_matches_local(model_dir, capsys):
    args = ["eval", "--model", str(model_dir), "--limit", "4", "--max-new-tokens", "3", "--json"]
    main(args)
    local = json.loads(capsys.readouterr().out)
    main(args + ["--remote", "local"])
    remote = json.loads(capsys.readouterr().out)
    assert local["accuracy"] == remote["accuracy"] and local["n"] == remote["n"]


def test_bad_inputs_give_clear_errors(model_dir, capsys):
    assert main(["eval", "--model", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["eval", "--model", str(model_dir), "--dataset", "missing.jsonl"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--model", str(model_dir), "--dtype", "float32", "--device", "cuda:0"]) in (0, 2)


def test_demo_runs_and_writes_its_outputs(model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(model_dir), "--limit", "4", "--examples", "2", "--studies", "none",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 4 and 0 <= summary["accuracy"] <= 1 and summary["store_examples"] == 4
    assert 0 <= summary["accuracy_k0"] <= 1 and 0 <= summary["accuracy_k0_free"] <= 1
    k0 = [json.loads(line) for line in (out / "eval_k0" / "predictions.jsonl").read_text().splitlines()]
    assert sum(r["correct"] for r in k0) / 4 == summary["accuracy_k0"]
    # each core accuracy carries its 95% bootstrap CI, computed here independently from the predictions
    import numpy as np

    correct = np.array([r["correct"] for r in k0], dtype=float)
    boots = correct[np.random.default_rng(0).integers(0, 4, size=(10_000, 4))].mean(axis=1)
    low, high = summary["accuracy_ci"]["accuracy_k0"]
    assert low <= summary["accuracy_k0"] <= high
    assert abs(low - np.quantile(boots, 0.025)) <= 0.25 and abs(high - np.quantile(boots, 0.975)) <= 0.25
    assert set(summary["accuracy_ci"]) == {"accuracy", "accuracy_k0", "accuracy_k0_free"}
    assert "accuracy [95% CI]" in (out / "index.html").read_text()
    # the worked examples are the lens study's (tests/lens/test_demo_worked_examples.py); it did not run here
    assert json.loads((out / "worked_examples.json").read_text()) == []
    assert (out / "eval" / "predictions.jsonl").exists() and (out / "capture.zarr" / "manifest.json").exists()
    assert (out / "index.html").exists() and summary["studies"] == {}


def test_convert_command_then_load(tmp_path, capsys):
    from factories import make_reference_checkpoint

    ref = make_reference_checkpoint(tmp_path / "ckpt", "llama")
    dst = tmp_path / "converted"
    assert main(["convert", str(ref["path"]), str(dst), "--base", str(ref["base_dir"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["lora_rank"] == 4 and info["merged_modules"] == 2 * 7  # 2 layers × 7 target modules
    assert (dst / "codi.json").exists() and (dst / "prj.safetensors").exists()
    direct = load_model(ref["path"], base=str(ref["base_dir"]))
    assert load_model(dst).answer(["tom has 3 pens ."], max_new_tokens=4) == direct.answer(["tom has 3 pens ."],
                                                                                            max_new_tokens=4)
    assert main(["convert", str(ref["path"]), str(dst), "--base", str(ref["base_dir"])]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err


def test_plain_lm_and_dtypes_through_load_model(tmp_path):
    import torch
    from factories import tiny_lm, word_tokenizer
    from nnsight import TransformersModel

    tiny_lm("gpt2").save_pretrained(tmp_path / "plain")
    word_tokenizer().save_pretrained(tmp_path / "plain")
    plain = load_model(tmp_path / "plain")
    assert isinstance(plain, TransformersModel) and plain.tokenizer.pad_token_id is not None
    codi_dir = make_converted(tmp_path / "c", "gpt2", num_latents=2)
    half = load_model(codi_dir, dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.prj._module[1].weight.dtype == torch.bfloat16
    assert len(half.answer(["tom has 3 pens ."], max_new_tokens=3)) == 1
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(codi_dir, dtype="int8")


def test_synthetic_eval_uses_the_models_training_distribution(tmp_path, capsys):
    from nnsight_codi.data.synthetic import generate_problems

    options = {"value_range": [0, 30], "max_steps": 2, "add_range": [1, 5], "mul_range": [2, 3]}
    model = make_converted(tmp_path / "m", "gpt2", num_latents=1, extra={"synthetic_options": options})
    assert main(["eval", "--model", str(model), "--limit", "3", "--max-new-tokens", "2", "--json",
                 "--out", str(tmp_path / "e")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    expected = generate_problems(3, seed=1, value_range=(0, 30), max_steps=2, add_range=(1, 5), mul_range=(2, 3))
    assert [r["question"] for r in rows] == list(expected["question"])


def test_synthetic_difficulty_flags_reach_the_problems(model_dir, tmp_path, capsys):
    out = tmp_path / "eval4"
    code = main(["eval", "--model", str(model_dir), "--limit", "12", "--max-new-tokens", "2", "--json",
                 "--min-steps", "4", "--max-steps", "4", "--value-max", "60", "--out", str(out)])
    assert code == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    expected = load_eval_dataset("synthetic", limit=12, min_steps=4, max_steps=4, value_range=(0, 60))
    assert [r["question"] for r in rows] == list(expected["question"])
    assert set(expected["steps"]) == {4} and max(v for vals in expected["intermediates"] for v in vals) <= 60
    capsys.readouterr()
    assert main(["eval", "--model", str(model_dir), "--limit", "2", "--min-steps", "5", "--max-steps", "2"]) == 2
    assert "min_steps" in capsys.readouterr().err
