"""One of each: K resolved by one function, one `predictions.jsonl` schema, one run-spec block, the loop
flags declared once, and `--layers` meaning residual layers 0..L wherever it exists.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from factories import make_converted

from nnsight_codi import cli
from nnsight_codi.cli import main
from nnsight_codi.data.scoring import extract_prediction
from nnsight_codi.predictions import Prediction, check_prediction_row, read_predictions, write_predictions
from nnsight_codi.steps import resolve_num_latents


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_converted(tmp_path_factory.mktemp("m"), "gpt2", num_latents=2)


# -- K ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, expected", [(None, 5), (0, 0), (3, 3), (7, 7)])
def test_resolve_num_latents(given, expected):
    assert resolve_num_latents(given, 5) == expected


@pytest.mark.parametrize("bad", [-1, True, 2.5])
def test_resolve_num_latents_refuses_what_is_no_count(bad):
    with pytest.raises(ValueError, match="num_latents must be >= 0"):
        resolve_num_latents(bad, 5)


def test_every_entry_point_takes_the_models_k_for_none(model_dir):
    """None and the model's K give the same run, through each entry point that resolves it."""
    from nnsight_codi.evaluation import evaluate, generate_answers
    from nnsight_codi.interventions.conditions import ModelShape
    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import run_loop

    codi = load_model(model_dir)
    assert codi.num_latents == 2
    prompts = codi.encode(["1 + 2 = ?", "3 * 4 - 1 = ?"])
    for k in (None, 2):
        assert codi.new_loop_state(prompts, k).num_latents == 2
        assert ModelShape.of(codi, k).num_latents == 2
        assert codi.step_names(k) == ["bot", "latent1", "latent2", "eot"]
    a, _ = run_loop(codi, prompts, max_new_tokens=3)
    b, _ = run_loop(codi, prompts, num_latents=2, max_new_tokens=3)
    c, _ = run_loop(codi, prompts, num_latents=0, max_new_tokens=3)
    assert torch.equal(a, b) and a.shape[0] == c.shape[0] == 2
    questions = ["1 + 2 = ?"]
    assert generate_answers(codi, questions, max_new_tokens=3, progress=False) == \
        generate_answers(codi, questions, num_latents=2, max_new_tokens=3, progress=False)
    data = {"id": ["a"], "question": questions, "answer": ["#### 3"]}
    assert evaluate(codi, data, max_new_tokens=3, progress=False).num_latents == 2
    assert evaluate(codi, data, num_latents=1, max_new_tokens=3, progress=False).num_latents == 1
    with pytest.raises(ValueError, match="num_latents must be >= 0"):
        run_loop(codi, prompts, num_latents=-1)


# -- predictions.jsonl ----------------------------------------------------------------------------------------


def test_prediction_rows_round_trip_and_bad_rows_are_refused(tmp_path):
    rows = [Prediction("1", "q1", "The answer is: 4", 4.0, 4.0, True),
            Prediction("2", "q2", "no number", float("inf"), 3.0, False, baseline_correct=True),
            Prediction("3", "q3", "7", 7.0, float("nan"), False, writes_chain=False)]
    path = write_predictions(tmp_path, rows)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[1]["prediction"] is None and lines[2]["gold"] is None  # non-finite: null
    assert "baseline_correct" not in lines[0] and lines[1]["baseline_correct"] is True
    back = read_predictions(tmp_path)
    assert back[0] == rows[0]
    assert math.isnan(back[1].prediction) and back[1].baseline_correct is True
    assert math.isnan(back[2].gold) and back[2].writes_chain is False
    text = path.read_text()
    write_predictions(tmp_path, back)
    assert path.read_text() == text
    good = lines[0]
    for bad, message in [({k: v for k, v in good.items() if k != "gold"}, "missing field"),
                         ({**good, "text": "x"}, "unknown field"),
                         ({**good, "correct": 1}, "correct must be bool"),
                         ({**good, "prediction": True}, "prediction must be"),
                         ({**good, "id": 3}, "id must be str")]:
        with pytest.raises(ValueError, match=message):
            check_prediction_row(bad)


def _same_schema(path):
    """Every row validates, and rewriting the records gives the same file (the round trip)."""
    records = read_predictions(path)
    text = (path / "predictions.jsonl").read_text()
    write_predictions(path, records)
    assert (path / "predictions.jsonl").read_text() == text
    return records, [json.loads(line) for line in text.splitlines()]


def test_eval_steer_and_cot_vectors_write_one_schema(model_dir, tmp_path, capsys):
    from nnsight_codi.interventions.steering_vectors import save_vector_file

    common = ["--limit", "3", "--max-new-tokens", "3", "--json"]
    assert main(["eval", "--model", str(model_dir), *common, "--out", str(tmp_path / "e")]) == 0
    vec = tmp_path / "v.safetensors"
    save_vector_file(vec, vector=torch.randn(32) * 20)
    assert main(["steer", "--model", str(model_dir), *common, "--mode", "hidden", "--vector", str(vec),
                 "--at", "1", "--layer", "1", "--out", str(tmp_path / "s")]) == 0
    assert main(["cot-vectors", "eval", "--model", "tiny-instruct", *common, "--condition", "direct",
                 "--out", str(tmp_path / "c")]) == 0
    capsys.readouterr()
    fields = {"id", "question", "prediction_text", "prediction", "gold", "correct"}
    eval_records, eval_rows = _same_schema(tmp_path / "e")
    steer_records, steer_rows = _same_schema(tmp_path / "s")
    cot_records, cot_rows = _same_schema(tmp_path / "c")
    assert all(set(r) == fields for r in eval_rows)
    assert all(set(r) == fields | {"baseline_correct"} for r in steer_rows)
    assert all(set(r) == fields | {"writes_chain"} for r in cot_rows)
    for records in (eval_records, steer_records, cot_records):
        assert len(records) == 3
        for p in records:  # the same scoring rule in every file
            pred = extract_prediction(p.prediction_text)
            assert (p.prediction == pred) or (math.isnan(p.prediction) and not math.isfinite(pred))
            assert p.correct == (p.prediction == p.gold)
    assert [p.question for p in eval_records] == [p.question for p in steer_records]
    assert all(math.isfinite(p.gold) for p in eval_records + steer_records + cot_records)


# -- the run-spec block and the loop flags ----------------------------------------------------------------------


def test_the_configs_share_one_run_spec_with_todays_defaults():
    from nnsight_codi.activation_capture import CaptureConfig
    from nnsight_codi.cot.vector_estimation import ExtractConfig
    from nnsight_codi.interventions.steering_sweep import SweepConfig
    from nnsight_codi.runspec import RunSpec

    spec = [f.name for f in dataclasses.fields(RunSpec)]
    assert spec == ["model", "dataset", "split", "seed", "limit", "batch_size", "device"]
    defaults = {CaptureConfig: ("tiny", "synthetic", "test", 1, None, 32, "cpu"),
                SweepConfig: ("tiny", "synthetic", "test", 1, 100, 64, "cpu"),
                ExtractConfig: ("tiny-instruct", "synthetic", "train", 0, 64, 16, "cpu")}
    for cls, values in defaults.items():
        assert issubclass(cls, RunSpec)
        assert tuple(getattr(cls(), name) for name in spec) == values, cls.__name__


def _subparser(command: str):
    subparsers = cli.build_parser()._subparsers
    assert subparsers is not None
    return subparsers._group_actions[0].choices[command]  # type: ignore[index]


def _options(command: str) -> dict[str, object]:
    return {opt: (action.dest, action.default, action.type, tuple(action.choices or ()))
            for action in _subparser(command)._actions for opt in action.option_strings}


def test_the_loop_flags_are_the_same_in_every_command_that_takes_them():
    import argparse

    from nnsight_codi.commands.common import add_loop_args

    reference = argparse.ArgumentParser()
    add_loop_args(reference)
    flags = {opt: (a.dest, a.default, a.type, tuple(a.choices or ()))
             for a in reference._actions for opt in a.option_strings if opt not in ("-h", "--help")}
    assert set(flags) >= {"--num-latents", "--batch-size", "--max-new-tokens", "--masking", "--remote"}
    for command in ("capture", "eval", "steer"):
        options = _options(command)
        assert {opt: options.get(opt) for opt in flags} == flags, command


# -- --layers --------------------------------------------------------------------------------------------------


def test_no_layers_flag_means_blocks(capsys):
    """`--layers` is residual layers 0..L (0 = the embeddings) in every command that has it; steer's KV blocks
    are `--blocks`, and `steer --layers` is refused with that explanation before any work.
    """
    helps = {a.dest: a.help for a in _subparser("capture")._actions}
    assert "layers 0..L" in str(helps["layers"]) and "blocks 0..L-1" in str(
        {a.dest: a.help for a in _subparser("steer")._actions}["blocks"])
    assert main(["steer", "--mode", "kv", "--pair", "1,2", "--layers", "0,1"]) == 2
    assert "--blocks" in capsys.readouterr().err
