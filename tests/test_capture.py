"""`nnsight-codi capture`: stored values equal an independent hand-written loop; resume after
SIGKILL; refusals and bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import make_converted
from reference_impl import reference_capture

from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.cli import main
from nnsight_codi.loading import load_model
from nnsight_codi.store import open_store

ALL = ("hidden", "latent_input", "attention", "kv", "answer_pred", "answer_gold", "correct", "prompt_ids")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_dir(request, tmp_path_factory):
    return make_converted(tmp_path_factory.mktemp(request.param), request.param, num_latents=2)


def test_every_variable_equals_an_independent_loop(model_dir, tmp_path):
    codi = load_model(model_dir)
    config = CaptureConfig(model=str(model_dir), limit=5, variables=ALL, batch_size=3, max_new_tokens=3)
    summary = run_capture(tmp_path / "s.zarr", config, codi=codi, progress=False)
    assert summary["examples"] == 5
    ds = open_store(tmp_path / "s.zarr")
    assert list(ds["step_name"].values) == ["bot", "latent1", "latent2", "eot"]
    lm = codi._module
    lm.set_attn_implementation("eager")
    cfg = codi.codi_config
    for i, question in enumerate(ds["question"].values):
        prompt = codi.tokenizer(str(question))["input_ids"]
        ref = reference_capture(lm, codi.prj._module, prompt, cfg.bot_id, cfg.eot_id, 2)
        n = len(prompt) + 1
        assert int(ds["prompt_length"][i]) == n
        assert ds["prompt_ids"][i, : n].values.tolist() == prompt + [cfg.bot_id]
        for s, step in enumerate(ref["steps"]):
            np.testing.assert_allclose(ds["hidden"][i, s].values, step["hidden"].numpy(), rtol=1e-4, atol=1e-4)
            width = step["attention"].shape[0]
            np.testing.assert_allclose(ds["attention"][i, s, :width].values, step["attention"].numpy(), atol=1e-5)
            assert np.isnan(ds["attention"][i, s, width:].values).all()
            if step["latent_input"] is not None:
                np.testing.assert_allclose(ds["latent_input"][i, s].values, step["latent_input"].numpy(),
                                           rtol=1e-4, atol=1e-4)
            else:
                assert np.isnan(ds["latent_input"][i, s].values).all()
        kv = ds["kv"][i].values  # [layer 0..L, 2, head, position, head_dim]; layer 0 has no cache
        seq = ref["kv"].shape[-2]
        assert np.isnan(kv[0]).all()
        np.testing.assert_allclose(kv[1:, :, :, :seq], ref["kv"].numpy(), rtol=1e-4, atol=1e-4)
    answers = codi.answer(list(map(str, ds["question"].values)), max_new_tokens=3)
    from nnsight_codi.data.scoring import extract_prediction
    preds = [extract_prediction(a) for a in answers]
    stored = ds["answer_pred"].values
    assert all((np.isnan(s) and not np.isfinite(p)) or s == p for s, p in zip(stored, preds))
    assert (ds["correct"].values == (stored == ds["answer_gold"].values)).all()


def test_remote_local_capture_equals_local(model_dir, tmp_path):
    codi = load_model(model_dir)
    base = dict(model=str(model_dir), limit=4, variables=("hidden", "latent_input", "correct"), batch_size=4,
                max_new_tokens=3)
    run_capture(tmp_path / "a.zarr", CaptureConfig(**base), codi=codi, progress=False)
    run_capture(tmp_path / "b.zarr", CaptureConfig(**base, remote="local"), codi=codi, progress=False)
    a, b = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    np.testing.assert_allclose(a["hidden"].values, b["hidden"].values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a["latent_input"].values, b["latent_input"].values, rtol=1e-5, atol=1e-5)


def _manifest_count(store: Path) -> int:
    try:
        data = json.loads((store / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(b - a for a, b in data.get("completed", []))


def test_sigkill_then_resume_is_complete_and_identical(tmp_path):
    model_dir = make_converted(tmp_path / "m", "gpt2", num_latents=2)
    args = ["capture", "--model", str(model_dir), "--limit", "24", "--batch-size", "2", "--max-new-tokens", "8",
            "--what", "hidden,latent_input,correct,prompt_ids"]
    reference = tmp_path / "ref.zarr"
    assert main(args + ["--out", str(reference), "--json"]) == 0
    store = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "nnsight_codi"] + args + ["--out", str(store), "--json"]
    for target in (2, 8, 14):  # kill after at least this many examples, at three points
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while _manifest_count(store) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _manifest_count(store) < 24, "the capture finished before it was killed; nothing was tested"
    assert main(args + ["--out", str(store), "--json"]) == 0  # resume
    a, b = open_store(reference), open_store(store)
    assert list(b["example"].values) == list(a["example"].values)  # every example exactly once, in order
    assert b["complete"].values.all()
    np.testing.assert_array_equal(a["hidden"].values, b["hidden"].values)
    np.testing.assert_array_equal(a["correct"].values, b["correct"].values)
    before = (store / "manifest.json").read_text()
    assert main(args + ["--out", str(store), "--json"]) == 0  # finished: nothing to do
    assert (store / "manifest.json").read_text() == before


def test_refusals_and_bad_inputs(tmp_path, capsys):
    model_dir = make_converted(tmp_path / "m", "gpt2", num_latents=2)
    store = tmp_path / "s.zarr"
    base = ["capture", "--model", str(model_dir), "--limit", "4", "--max-new-tokens", "2", "--out", str(store)]
    assert main(base + ["--layers", "0,1"]) == 0
    snapshot = open_store(store)["hidden"].values.copy()
    capsys.readouterr()
    assert main(base + ["--layers", "0,2"]) != 0
    assert "layers" in capsys.readouterr().err
    np.testing.assert_array_equal(open_store(store)["hidden"].values, snapshot)  # data intact
    fresh = tmp_path / "new.zarr"
    other = ["capture", "--model", str(model_dir), "--limit", "4", "--out", str(fresh)]
    assert main(other + ["--what", "hidden,nonsense"]) != 0
    assert "nonsense" in capsys.readouterr().err
    assert main(other + ["--layers", "0,9"]) != 0
    assert "9" in capsys.readouterr().err
    assert not fresh.exists()  # refused before any work
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        assert main(["capture", "--model", str(model_dir), "--out", str(locked / "x.zarr")]) != 0


def test_a_model_retrained_in_place_does_not_resume_the_old_store(tmp_path, capsys):
    """Same path, same config, other weights: refused (naming the key), data intact; same weights resume."""
    import shutil

    model_dir = make_converted(tmp_path / "m", "gpt2", num_latents=2, seed=0)
    store = tmp_path / "s.zarr"
    args = ["capture", "--model", str(model_dir), "--limit", "4", "--max-new-tokens", "2", "--what", "hidden",
            "--out", str(store)]
    assert main(args) == 0
    before = (store / "manifest.json").read_text()
    snapshot = open_store(store)["hidden"].values.copy()
    shutil.rmtree(model_dir)
    make_converted(model_dir, "gpt2", num_latents=2, seed=1)  # "retrained" under the same path
    capsys.readouterr()
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "model_weights" in err and "Traceback" not in err
    assert (store / "manifest.json").read_text() == before
    np.testing.assert_array_equal(open_store(store)["hidden"].values, snapshot)
    shutil.rmtree(model_dir)
    make_converted(model_dir, "gpt2", num_latents=2, seed=0)  # the original weights again: resumes
    assert main(args) == 0


def test_plain_lm_capture_positions_equal_hf_hidden_states(tmp_path):
    from factories import tiny_lm, word_tokenizer

    from nnsight_codi.loading import load_plain_lm

    lm_dir = tmp_path / "plain"
    tiny_lm("llama").save_pretrained(lm_dir)
    tok = word_tokenizer()
    tok.pad_token = "<eos>"
    tok.save_pretrained(lm_dir)
    model = load_plain_lm(lm_dir)
    model.tokenizer.padding_side = "right"  # the caller's setting: capture left-pads without changing it
    config = CaptureConfig(model=str(lm_dir), limit=3, variables=("hidden", "attention", "prompt_ids"),
                           positions=(-2, -1), batch_size=3)
    run_capture(tmp_path / "p.zarr", config, codi=model, progress=False)
    assert model.tokenizer.padding_side == "right"
    ds = open_store(tmp_path / "p.zarr")
    assert list(ds["step_name"].values) == ["pos-2", "pos-1"]
    hf = model._module
    hf.set_attn_implementation("eager")
    for i, question in enumerate(ds["question"].values):
        ids = torch.tensor([tok(str(question))["input_ids"]])
        with torch.no_grad():
            out = hf(input_ids=ids, output_hidden_states=True, output_attentions=True)
        # hidden_states[-1] is final-normed; the store's last layer is the last block's output (pre norm)
        last_block = []
        handle = hf.model.layers[-1].register_forward_hook(lambda m, a, o: last_block.append(o))
        with torch.no_grad():
            hf(input_ids=ids)
        handle.remove()
        expected = torch.stack(list(out.hidden_states[:-1]) + [last_block[0]], 2)[0]  # [seq, layer, dim]
        np.testing.assert_allclose(ds["hidden"][i].values, expected[[-2, -1]].numpy(), rtol=1e-4, atol=1e-4)
        attn = torch.stack([a[0, :, [-2, -1]].mean(0) for a in out.attentions]).mean(0)  # [2, seq]
        np.testing.assert_allclose(ds["attention"][i, :, : ids.shape[1]].values, attn.numpy(), atol=1e-5)
    remote = CaptureConfig(model=str(lm_dir), limit=3, variables=("hidden",), positions=(-2, -1), batch_size=3,
                           remote="local")
    run_capture(tmp_path / "r.zarr", remote, codi=model, progress=False)
    np.testing.assert_allclose(open_store(tmp_path / "r.zarr")["hidden"].values, ds["hidden"].values, atol=1e-5)
    with pytest.raises(ValueError, match="need a CODI model"):
        run_capture(tmp_path / "q.zarr", CaptureConfig(model=str(lm_dir), limit=2, variables=("hidden", "correct")),
                    codi=model, progress=False)
