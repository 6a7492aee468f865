"""Every command on the shipped tiny Coconut (`--model tiny-coconut`), end to end, checked against the family's
own rule and against the unsteered run: capture records the family and Coconut's feedback (latent k's input
is the previous step's final-normed last hidden state), steering with coefficient 0 is the unsteered run and a
large coefficient moves answers, a sweep resumes to the same table, a tuned lens trains on its latents."""

from __future__ import annotations

import json

import numpy as np
import torch

from nnsight_codi.cli import main
from nnsight_codi.loading import load_model
from nnsight_codi.store import open_store

MODEL = "tiny-coconut"


def test_capture_records_the_family_and_its_feedback(tmp_path, capsys):
    out = tmp_path / "cap.zarr"
    assert main(["capture", "--model", MODEL, "--limit", "6", "--max-new-tokens", "8", "--what", "hidden,latent_input,correct",
                 "--out", str(out)]) == 0
    ds = open_store(out)
    assert ds.attrs["config"]["latent_family"] == "coconut"  # the store records the family
    assert list(ds["step_name"].values) == ["bot", *(f"latent{k}" for k in range(1, 7)), "eot"]
    # residual stream after the last block [example, step, dim], then GPT-2's final norm by hand
    residual = torch.from_numpy(ds["hidden"].sel(layer=int(ds["layer"].max())).values)
    ln_f = load_model(MODEL)._module.transformer.ln_f
    mean, var = residual.mean(-1, keepdim=True), residual.var(-1, unbiased=False, keepdim=True)
    final = ((residual - mean) / torch.sqrt(var + ln_f.eps) * ln_f.weight + ln_f.bias).detach().numpy()
    latent_input = ds["latent_input"].values
    for k in range(1, 7):  # Coconut: no projection, the final-normed hidden state itself is the next input
        np.testing.assert_allclose(latent_input[:, k], final[:, k - 1], rtol=1e-4, atol=1e-4)
    assert float(ds["correct"].values.mean()) >= 0.5  # the shipped model solves most of its own problems


def _steer(extra: list[str], capsys) -> dict:
    code = main(["steer", "--model", MODEL, "--limit", "8", "--max-new-tokens", "8", "--reference-limit", "16",
                 "--json", *extra])
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_steering_with_coefficient_zero_is_the_unsteered_run(capsys):
    zero = _steer(["--mode", "hidden", "--pair", "1,2", "--layer", "2", "--at", "2", "--coef", "0"], capsys)
    assert zero["changed_answers"] == 0 and zero["accuracy"] == zero["baseline_accuracy"]
    strong = _steer(["--mode", "hidden", "--pair", "1,4", "--layer", "2", "--at", "2", "--coef", "16"], capsys)
    assert strong["baseline_accuracy"] == zero["baseline_accuracy"]  # the same problems, the same unsteered run
    assert strong["changed_answers"] > 0


def test_kv_steering_and_mean_patching_run_on_coconut(capsys):
    kv = _steer(["--mode", "kv", "--pair", "1,2", "--coef-k", "0", "--coef-v", "0"], capsys)
    assert kv["changed_answers"] == 0
    patch = _steer(["--mode", "patch", "--patch", "zero", "--at", "1"], capsys)
    assert patch["n"] == 8 and 0.0 <= patch["accuracy"] <= 1.0


def test_sweep_on_coconut(tmp_path, capsys):
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps({"model": MODEL, "limit": 8, "max_new_tokens": 8, "reference_limit": 8,
                                  "modes": ["hidden"], "pairs": [[1, 2]], "coefs": [0.0, 8.0], "layer": 2,
                                  "extra_latent_step": False,
                                  "baselines": ["mean"], "batch_size": 8}))
    assert main(["sweep", str(config), "--out", str(tmp_path / "sweep"), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["sweep", str(config), "--out", str(tmp_path / "sweep"), "--json"]) == 0  # resumed: nothing reruns
    second = json.loads(capsys.readouterr().out)
    assert second["runs_now"] == 0 and first["table"] == second["table"]
    zero = [r for r in first["table"] if r["mode"] == "hidden" and r["coef"] == 0.0]
    assert zero and all(r["delta"] == 0 and r["accuracy"] == first["baseline_accuracy"] for r in zero)


def test_tuned_lens_trains_on_coconut_latents(tmp_path):
    out = tmp_path / "lens"
    assert main(["lens", "train", "--model", MODEL, "--limit", "16", "--steps", "3", "--out", str(out)]) == 0
    assert (out / "config.json").is_file()
