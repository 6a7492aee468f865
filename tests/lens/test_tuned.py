"""Tuned lens: zero translators = logit lens; training beats the logit lens on held-out KL;
save → load round trip in tuned-lens's layout; a lens of another model is refused; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import make_converted

from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.cli import main as cli_main
from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.lens.lens_training import collect, evaluate_lens, parse_data_mode
from nnsight_codi.lens.readout import lens_readouts
from nnsight_codi.lens.tuned import TunedLens
from nnsight_codi.store import open_store


def test_zero_tuned_lens_is_logit_lens(tiny, tmp_path):
    lens = TunedLens.for_model(tiny)
    h = np.random.default_rng(0).normal(size=(3, 2, 5, 128)).astype(np.float32) * 5
    a = lens_readouts(tiny, h, range(5), 7)
    b = lens_readouts(tiny, h, range(5), 7, tuned=lens, prefix="tuned_lens")
    np.testing.assert_array_equal(a["lens_top_ids"], b["tuned_lens_top_ids"])
    np.testing.assert_allclose(a["lens_entropy"], b["tuned_lens_entropy"])
    # and through capture: logit and tuned read-outs side by side in one store
    lens.save(tmp_path / "zero")
    run_capture(tmp_path / "s.zarr", CaptureConfig(limit=4, variables=("lens",), lens_path=str(tmp_path / "zero"),
                                                   lens_k=4), codi=tiny, progress=False)
    ds = open_store(tmp_path / "s.zarr")
    np.testing.assert_array_equal(ds["lens_top_ids"].values, ds["tuned_lens_top_ids"].values)
    np.testing.assert_allclose(ds["lens_top_probs"].values, ds["tuned_lens_top_probs"].values)


def test_training_reduces_heldout_kl(tiny, tiny_lens):
    lens = TunedLens.load(tiny_lens, model=tiny)
    ds = load_eval_dataset("synthetic", limit=24, seed=1, **synthetic_options(tiny))  # disjoint from seed 2
    rows = evaluate_lens(tiny, lens, collect(tiny, ds, "latents", progress=False))
    assert len(rows) == tiny.num_layers  # layers 0..L-1; layer L is read without a translator
    for r in rows:
        assert r["kl_tuned"] < r["kl_logit"], r


def test_killed_training_resumes_to_the_same_lens_and_refuses_other_weights(tmp_path, monkeypatch):
    """Killed after its step-10 checkpoint, a rerun ends with the uninterrupted run's translators;
    the same checkpoint is refused for a model whose weights changed under the same path; the
    checkpoint is gone once training finishes."""
    from nnsight_codi.lens.lens_training import TrainConfig, train_tuned_lens
    from nnsight_codi.loading import load_model

    codi = load_model("tiny")
    ds = load_eval_dataset("synthetic", limit=8, seed=2, **synthetic_options(codi))
    data = collect(codi, ds, "latents", progress=False)
    cfg = TrainConfig(steps=20, batch_size=32, save_every=10)
    whole = train_tuned_lens(codi, data, cfg, out=tmp_path / "whole", progress=False)
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def dies_at_step_11(*args, **kwargs):
        calls.append(1)
        if len(calls) == 11:
            raise KeyboardInterrupt
        return real_clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", dies_at_step_11)
    with pytest.raises(KeyboardInterrupt):
        train_tuned_lens(codi, data, cfg, out=tmp_path / "killed", progress=False)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"] == 10
    other = load_model("tiny")
    with torch.no_grad():
        other._module.transformer.h[0].mlp.c_fc.weight.add_(1e-3)  # "retrained" under the same path
    with pytest.raises(ValueError, match="other weights"):
        train_tuned_lens(other, data, cfg, out=tmp_path / "killed", progress=False)
    resumed = train_tuned_lens(codi, data, cfg, out=tmp_path / "killed", progress=False)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for run in ("whole", "killed"):  # a finished training leaves the lens, not its checkpoint
        assert not (tmp_path / run / "checkpoint.pt").exists() and (tmp_path / run / "params.pt").is_file()


def test_save_load_round_trip_in_tuned_lens_layout(tiny, tiny_lens, tmp_path):
    config = json.loads((tiny_lens / "config.json").read_text())
    assert {"base_model_name_or_path", "d_model", "num_hidden_layers", "bias", "unembed_hash",
            "lens_type"} <= set(config)
    state = torch.load(tiny_lens / "params.pt", weights_only=True)
    # tuned-lens saves `layer_translators.state_dict()`: keys `{i}.weight` / `{i}.bias`
    assert sorted(state) == sorted(f"{i}.{p}" for i in range(4) for p in ("weight", "bias"))
    lens = TunedLens.load(tiny_lens, model=tiny)
    assert float(state["0.weight"].abs().sum()) > 0  # trained, not zero
    # the prefixed spelling (`layer_translators.{i}.weight`, a whole-lens state dict) loads too
    torch.save({f"layer_translators.{k}": v for k, v in state.items()}, tmp_path / "params.pt")
    (tmp_path / "config.json").write_text(json.dumps(config))
    prefixed = TunedLens.load(tmp_path, model=tiny)
    torch.testing.assert_close(prefixed.layer_translators[2].weight, lens.layer_translators[2].weight)
    lens.save(tmp_path / "again")
    again = TunedLens.load(tmp_path / "again", model=tiny)
    h = torch.randn(4, 128)
    for layer in range(5):
        torch.testing.assert_close(lens.transform(h, layer), again.transform(h, layer))


def test_lens_of_another_model_is_refused(tiny, tmp_path):
    other = load_model_converted(tmp_path)
    TunedLens.for_model(other).save(tmp_path / "other")
    with pytest.raises(ValueError, match="d_model|another model"):
        TunedLens.load(tmp_path / "other", model=tiny)
    # same shape, different unembedding: the hash refuses it
    lens = TunedLens.for_model(tiny)
    lens.config["unembed_hash"] = "0" * 64
    lens.save(tmp_path / "wrong")
    with pytest.raises(ValueError, match="another model"):
        TunedLens.load(tmp_path / "wrong", model=tiny)
    # params that do not fit the config
    torch.save({"0.weight": torch.zeros(3, 3)}, tmp_path / "wrong" / "params.pt")
    with pytest.raises(ValueError, match="do not fit"):
        TunedLens.load(tmp_path / "wrong")


def load_model_converted(tmp_path):
    from nnsight_codi.loading import load_model

    return load_model(make_converted(tmp_path / "m", "gpt2", num_latents=2))


def test_data_modes():
    assert parse_data_mode("text", 6) == ("text", ())
    assert parse_data_mode("latents", 3) == ("latents", (1, 2, 3))
    assert parse_data_mode("latent:3", 6) == ("latents", (3,))
    with pytest.raises(ValueError, match="unknown --data"):
        parse_data_mode("latent", 6)
    with pytest.raises(ValueError, match="out of range"):
        parse_data_mode("latent:7", 6)
    with pytest.raises(ValueError, match="out of range"):
        parse_data_mode("latent:0", 6)


@pytest.mark.parametrize("argv, message", [
    (["lens", "train", "--data", "words", "--out", "X"], "unknown --data"),
    (["lens", "train", "--data", "latent:9", "--out", "X"], "out of range"),
    (["lens", "eval", "--lens", "/nonexistent"], "not a tuned-lens directory"),
])
def test_cli_errors(tmp_path, capsys, argv, message):
    argv = [a.replace("X", str(tmp_path / "o")) for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_train_and_eval(tmp_path, capsys):
    out = tmp_path / "lens3"
    assert cli_main(["lens", "train", "--data", "latent:3", "--limit", "16", "--steps", "5", "--out", str(out),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["positions"] == 16
    assert cli_main(["lens", "eval", "--lens", str(out), "--limit", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "latent:3" and len(result["layers"]) == 4
