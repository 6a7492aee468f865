"""The pause control as a condition of every study that compares conditions (`patch="pause"`): on each family it
answers exactly as the loop's own pause feedback does, forked with other conditions too, and `steer` and a
sweep take it."""

from __future__ import annotations

import json

import pytest
import torch

from nnsight_codi.cli import main
from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.interventions.conditions import Condition, ModelShape, Resources, run_condition, run_conditions
from nnsight_codi.interventions.steering_sweep import SweepConfig, expand_conditions
from nnsight_codi.loading import load_model


@pytest.fixture(scope="module", params=["tiny", "tiny-coconut"])
def model_and_questions(request):
    model = load_model(request.param)
    data = load_eval_dataset("synthetic", limit=6, seed=5, **synthetic_options(model, {}))
    return model, list(data["question"])


def test_pause_condition_equals_the_loops_pause_feedback(model_and_questions):
    model, questions = model_and_questions
    shape = ModelShape.of(model)
    cond = Condition("patch", patch="pause")
    assert cond.name == "patch:pause"
    got = run_condition(model, model.encode(questions), cond, shape, Resources(), list(range(len(questions))),
                        max_new_tokens=8)
    expected = model.answer(questions, max_new_tokens=8, feedback="pause")
    assert model.decode(got) == expected
    assert model.decode(got) != model.answer(questions, max_new_tokens=8)  # the control changes answers
    # forked beside other conditions: the same answers
    both = run_conditions(model, model.encode(questions), [Condition("none"), cond], shape, Resources(),
                          list(range(len(questions))), max_new_tokens=8)
    assert torch.equal(both[1], got)


def test_steer_and_sweep_take_the_pause_control(tmp_path, capsys):
    assert main(["steer", "--model", "tiny-coconut", "--limit", "6", "--max-new-tokens", "8", "--mode", "patch",
                 "--patch", "pause", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["condition"]["name"] == "patch:pause" and summary["changed_answers"] > 0
    cfg = SweepConfig(model="tiny", pairs=[[1, 2]], coefs=[1.0], baselines=["pause", "zero"])
    assert [c.name for c in expand_conditions(cfg, 6)][-2:] == ["patch:pause", "patch:zero"]
    with pytest.raises(ValueError, match="unknown baseline"):
        SweepConfig(baselines=["paws"]).check()
