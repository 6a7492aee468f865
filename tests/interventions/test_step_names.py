"""Step names (`bot`, `latent1`..`latentK`, `eot`) work wherever a step is given, with the same
result as the index; an unknown name is one line and a non-zero exit."""

from __future__ import annotations

import json

import pytest
from factories import make_converted

from nnsight_codi.cli import main
from nnsight_codi.interventions import Condition
from nnsight_codi.interventions.steering_sweep import SweepConfig, expand_conditions
from nnsight_codi.lens.lens_training import parse_data_mode
from nnsight_codi.steps import parse_step, resolve_step, step_names


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_converted(tmp_path_factory.mktemp("m"), "gpt2", num_latents=2)


def test_every_name_resolves_to_its_index():
    for k in (0, 1, 4):
        assert [resolve_step(n, k) for n in step_names(k)] == list(range(k + 2))
    assert resolve_step("answer2", 3) == 6 and resolve_step(" 3 ", 3) == 3
    for bad in ("latent0", "lat1", "eos", "", "latent-1", True):
        with pytest.raises(ValueError, match="unknown step"):
            parse_step(bad)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_step("latent5", 4)


def test_conditions_and_sweep_configs_take_names():
    named = Condition.from_dict({"mode": "hidden", "pair": ["latent3", "latent1"], "at": "eot", "coef": 1.0})
    assert named.resolve(6) == Condition("hidden", pair=(3, 1), at=7, coef=1.0)
    cfg = SweepConfig.from_dict({"modes": ["hidden"], "pairs": [["latent1", "latent2"], [2, 1]], "coefs": [1.0],
                                 "at": "latent2", "patch_at": "latent1", "baselines": ["zero"],
                                 "conditions": [{"mode": "patch", "patch": "mean", "at": "latent3"}]})
    by_index = SweepConfig.from_dict({"modes": ["hidden"], "pairs": [[1, 2], [2, 1]], "coefs": [1.0], "at": 2,
                                      "patch_at": 1, "baselines": ["zero"],
                                      "conditions": [{"mode": "patch", "patch": "mean", "at": 3}]})
    assert expand_conditions(cfg, 3) == expand_conditions(by_index, 3)
    with pytest.raises(ValueError, match="unknown step 'latnt2'"):
        SweepConfig.from_dict({"at": "latnt2"})
    with pytest.raises(ValueError, match="unknown step"):
        SweepConfig.from_dict({"pairs": [["latent1", "x"]]})
    assert parse_data_mode("latent2", 3) == parse_data_mode("latent:2", 3) == ("latents", (2,))


def test_steer_at_a_name_equals_the_index(model_dir, tmp_path, capsys):
    runs = {}
    for at in ("latent2", "2"):
        out = tmp_path / at
        assert main(["steer", "--model", str(model_dir), "--limit", "6", "--max-new-tokens", "4", "--mode", "patch",
                     "--patch", "zero", "--at", at, "--out", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        runs[at] = (summary["condition"], (out / "predictions.jsonl").read_text())
    assert runs["latent2"] == runs["2"]
    assert runs["2"][0]["at"] == 2


@pytest.mark.parametrize("flags", [["--at", "latnt2"], ["--at", "latent7"], ["--pair", "latent1,nope"]])
def test_unknown_step_names_are_one_line(model_dir, flags, capsys):
    mode = ["--mode", "patch", "--patch", "zero"] if flags[0] == "--at" else ["--mode", "hidden"]
    try:
        rc = main(["steer", "--model", str(model_dir), "--limit", "2", *mode, *flags])
    except SystemExit as exit_info:   # argparse (a bad name) exits; a name past K is refused once K is known
        rc = exit_info.code
    assert rc != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "step" in errors[0] and "latent" in errors[0]


def test_hooks_take_names_that_need_no_k(model_dir):
    """`bot` and `latentk` resolve in the hooks themselves; `eot` needs K and says so."""
    import torch

    from nnsight_codi.interventions import AddVector
    from nnsight_codi.interventions.patching import PatchLatent, PatchResidual
    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import run_loop

    v = torch.ones(32)
    assert AddVector(v, 1, ["bot", "latent2", 3]).steps == (0, 2, 3)
    assert PatchLatent("latent1", v).step == 1 and PatchResidual("latent2", 1, v).step == 2
    with pytest.raises(ValueError, match="depends on the number of latents"):
        AddVector(v, 1, ["eot"])
    codi = load_model(model_dir)
    prompts = codi.encode(["Tom has 3 pens and buys 4 more . How many pens ?"])
    named, _ = run_loop(codi, prompts, [PatchLatent("latent2", torch.zeros(1, 32))], max_new_tokens=4)
    indexed, _ = run_loop(codi, prompts, [PatchLatent(2, torch.zeros(1, 32))], max_new_tokens=4)
    assert torch.equal(named, indexed)
