"""Sweeps: reproducible with a seed, resumable after SIGKILL with no condition lost or duplicated;
the steer command's paired comparison; bad inputs fail with one clear line before any work."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from factories import make_converted

from nnsight_codi.cli import main
from nnsight_codi.interventions import Condition, ModelShape, Resources, build_hooks, save_vector_file
from nnsight_codi.interventions.steering_sweep import SweepConfig, expand_conditions, run_sweep
from nnsight_codi.loading import load_model
from nnsight_codi.store import open_store
from nnsight_codi.store.sweep_store import condition_table, open_sweep
from nnsight_codi.store.vector_store import open_vectors


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_converted(tmp_path_factory.mktemp("m"), "gpt2", num_latents=2)


def _config(model_dir, **kw):
    data = {"model": str(model_dir), "limit": 12, "batch_size": 3, "max_new_tokens": 4, "reference_limit": 6,
            "pairs": "all", "coefs": [4.0], "kv_coefs": [[4.0, -4.0]], "baselines": ["random", "mean", "zero"]}
    data.update(kw)
    return data


def _done(store) -> int:
    try:
        data = json.loads((store / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(b - a for a, b in data.get("completed", []))


def test_expand_conditions_grid():
    cfg = SweepConfig(pairs="all", coefs=[-1.0, 1.0], baselines=["random", "zero"])
    names = [c.name for c in expand_conditions(cfg, num_latents=3)]
    assert names[0] == "none" and len(names) == len(set(names))
    assert len(names) == 1 + 2 * 6 * 2 + 2  # none + modes × ordered pairs × coefs + baselines
    assert "kv:3-1:k-1,v-1" in names and "hidden:1-3:c+1+x" in names and "patch:zero" in names


def test_sweep_reproducible_and_resumes_after_sigkill(model_dir, tmp_path):
    cfg_path = tmp_path / "sweep.json"
    cfg_path.write_text(json.dumps(_config(model_dir)))
    ref_dir = tmp_path / "ref"
    whole_path = tmp_path / "whole.json"  # the reference runs every condition whole; the killed sweep forks
    whole_path.write_text(json.dumps(_config(model_dir, fork=False)))
    assert main(["sweep", str(whole_path), "--out", str(ref_dir), "--json"]) == 0
    reference = open_sweep(ref_dir)
    n_cond = reference.sizes["condition"]
    assert n_cond == 1 + 2 + 2 + 3 and reference["complete"].values.all()
    # the same config in a new directory, run by three processes (two killed): the same numbers
    # (vectors and random patches are seeded; random draws do not depend on batching)
    killed = tmp_path / "killed"
    store = killed / "sweep.zarr"
    cmd = [sys.executable, "-m", "nnsight_codi", "sweep", str(cfg_path), "--out", str(killed), "--json"]
    for target in (9, 40):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while _done(store) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _done(store) < n_cond * 12, "the sweep finished before it was killed; nothing was tested"
    assert main(["sweep", str(cfg_path), "--out", str(killed), "--json"]) == 0
    resumed = open_sweep(killed)
    assert list(resumed["condition"].values) == list(reference["condition"].values)
    assert resumed["complete"].values.all() and _done(store) == n_cond * 12
    np.testing.assert_array_equal(resumed["correct"].values, reference["correct"].values)
    np.testing.assert_array_equal(resumed["answer_pred"].values, reference["answer_pred"].values)
    table = condition_table(resumed)
    assert set(table.columns) >= {"accuracy", "delta", "delta_low", "delta_high", "significant"}
    base = table.set_index("condition").loc["none"]
    assert base["delta"] == 0 and not base["significant"]
    # the vectors are stored as labeled arrays, and each condition is in the store's provenance
    vectors = open_vectors(ref_dir / "vectors.zarr")
    assert vectors["vector"].dims == ("pair_a", "pair_b", "layer", "dim")
    assert vectors["kv_vector"].sizes["block"] == 2
    np.testing.assert_allclose(vectors["vector"].sel(pair_a=1, pair_b=2), -vectors["vector"].sel(pair_a=2, pair_b=1))
    attrs = open_store(store).attrs
    assert [c["name"] for c in attrs["interventions"]] == list(reference["condition"].values)


@pytest.mark.parametrize("masking", ["exact", "reference"])
def test_forked_sweep_store_and_table_equal_the_unforked(model_dir, tmp_path, masking):
    """Conditions branch from one unsteered trunk per batch; the store's rows and table.csv are those of
    running every condition whole (`fork: false`), byte for byte."""
    cfg = _config(model_dir, limit=7, pairs=[[1, 2], [2, 1]], coefs=[4.0, -4.0], kv_coefs=[[4.0, -4.0], [-2.0, 2.0]],
                  masking=masking, patch_at=1)
    dirs = {}
    for fork in (True, False):
        path = tmp_path / f"c{fork}.json"
        path.write_text(json.dumps(cfg | {"fork": fork}))
        dirs[fork] = tmp_path / f"fork{fork}"
        assert main(["sweep", str(path), "--out", str(dirs[fork]), "--json"]) == 0
    a, b = open_store(dirs[True] / "sweep.zarr"), open_store(dirs[False] / "sweep.zarr")
    for name in ("answer_pred", "answer_gold", "correct"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert a.attrs["config"] == b.attrs["config"]  # `fork` is not part of the store's identity
    assert (dirs[True] / "table.csv").read_bytes() == (dirs[False] / "table.csv").read_bytes()
    preds = open_sweep(dirs[True])["answer_pred"].values
    assert len({tuple(np.nan_to_num(row, nan=-1)) for row in preds}) > 1  # the conditions changed answers


def test_vectors_equal_the_store_means(model_dir, tmp_path):
    ref_dir = tmp_path / "s"
    run_sweep(SweepConfig.from_dict(_config(model_dir, limit=2, modes=["kv"], pairs=[[1, 2]], baselines=[])),
              ref_dir, progress=False)
    ds = open_store(ref_dir / "reference.zarr")
    vectors = open_vectors(ref_dir / "vectors.zarr")
    h = ds["hidden"].values
    np.testing.assert_allclose(vectors["vector"].sel(pair_a=2, pair_b=1, layer=1).values,
                               h[:, 2, 1].mean(0) - h[:, 1, 1].mean(0), rtol=1e-5, atol=1e-6)
    kv, plen = ds["kv"].values, ds["prompt_length"].values                # latent k at position plen + k - 1
    rows = np.arange(len(plen))
    mean2 = kv[rows, 2, 0, :, plen + 1, :].mean(0)                        # block 1 (layer 2), keys, latent 2
    mean1 = kv[rows, 2, 0, :, plen, :].mean(0)
    np.testing.assert_allclose(vectors["kv_vector"].sel(pair_a=2, pair_b=1, block=1, kv_part="key").values,
                               mean2 - mean1, rtol=1e-5, atol=1e-6)
    li = ds["latent_input"].values[:, 1]
    np.testing.assert_allclose(vectors["latent_mean"].values[1], li.mean(0), rtol=1e-5, atol=1e-6)


def test_steer_command_reports_the_paired_difference(model_dir, tmp_path, capsys):
    vec = tmp_path / "v.safetensors"
    save_vector_file(vec, vector=torch.randn(32) * 20)
    out = tmp_path / "o"
    assert main(["steer", "--model", str(model_dir), "--limit", "8", "--max-new-tokens", "4", "--mode", "hidden",
                 "--vector", str(vec), "--at", "1", "--layer", "1", "--coef", "1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == summary["n"] == 8
    assert set(rows[0]) >= {"id", "question", "prediction_text", "prediction", "gold", "correct"}
    acc = np.mean([r["correct"] for r in rows])
    base = np.mean([r["baseline_correct"] for r in rows])
    assert summary["accuracy"] == pytest.approx(acc) and summary["baseline_accuracy"] == pytest.approx(base)
    assert summary["difference"] == pytest.approx(acc - base)
    assert summary["difference_ci"][0] <= summary["difference"] <= summary["difference_ci"][1]


def test_bad_inputs_fail_before_any_work(model_dir, tmp_path, capsys):
    codi = load_model(model_dir)
    shape = ModelShape.of(codi)
    vectors = open_vectors(_small_vectors(model_dir, tmp_path))
    res = Resources.from_vectors(vectors)
    bad = {
        "dimension 32": Condition("hidden", vector_file=str(_file(tmp_path, "wrong", vector=torch.zeros(7)))),
        "NaN": Condition("hidden", vector_file=str(_file(tmp_path, "nan", vector=torch.full((32,), float("nan"))))),
        "step 9 out of range": Condition("hidden", pair=(1, 2), at=9),
        "layer 5 out of range": Condition("hidden", pair=(1, 2), layer=5),
        "unknown mode": Condition("shift", pair=(1, 2)),
        "unknown KV position set": Condition("kv", pair=(1, 2), positions="middle"),
        r"latent\(s\) \[7\] not in the vectors": Condition("kv", pair=(1, 7)),
        "block": Condition("kv", pair=(1, 2), blocks=(4,)),
        "shape": Condition("kv", vector_file=str(_file(tmp_path, "kv", keys=torch.zeros(2, 4, 3),
                                                         values=torch.zeros(2, 4, 3)))),
        "latent patch: step 0": Condition("patch", patch="zero", at=0),
    }
    for message, cond in bad.items():
        with pytest.raises(ValueError, match=message):
            build_hooks(cond, shape, res, [0])
    base = ["steer", "--model", str(model_dir), "--limit", "2", "--out", str(tmp_path / "never")]
    capsys.readouterr()
    for args, message in [(["--mode", "shift", "--pair", "1,2"], "unknown mode"),
                          (["--mode", "kv", "--pair", "1,2", "--positions", "middle"], "unknown position set"),
                          (["--mode", "hidden", "--vector", str(tmp_path / "missing.safetensors")], "not found"),
                          (["--mode", "hidden", "--pair", "1,2", "--vectors", str(tmp_path / "vec.zarr"),
                            "--layer", "9"], "out of range"),
                          (["--mode", "kv", "--pair", "1,7", "--vectors", str(tmp_path / "vec.zarr")], "not in the vectors"),
                          (["--mode", "patch"], "needs --patch"),
                          # no --vectors: the shape checks come before the reference run would be captured
                          (["--mode", "hidden", "--pair", "1,2", "--layer", "9"], "layer 9 out of range"),
                          (["--mode", "kv", "--pair", "1,9"], r"latent(s) [9] out of range 1..2"),
                          (["--mode", "kv", "--pair", "1,2", "--blocks", "4"], "block(s) [4] out of range"),
                          (["--mode", "patch", "--patch", "mean", "--at", "3"], "step 3 out of range 1..2")]:
        assert main(base + args) == 2
        full = capsys.readouterr().err
        err = "\n".join(line for line in full.splitlines() if line.startswith("nnsight-codi"))
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in full
        assert not (tmp_path / "never").exists()
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"modes": ["sideways"]}))
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "never")]) == 2
    assert "unknown sweep mode" in capsys.readouterr().err
    cfg.write_text(json.dumps({"coefficients": [1]}))
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "never")]) == 2
    assert "sweep config: unknown key" in capsys.readouterr().err
    cfg.write_text(json.dumps({"coefs": [1, "two"]}))
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "never")]) == 2
    assert "sweep config: coefs must be list[float], got [1, 'two'] (list)" in capsys.readouterr().err
    cfg.write_text(json.dumps({"model": str(model_dir), "limit": 2, "modes": ["hidden"], "layer": 7}))
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "never")]) == 2
    assert "layer 7 out of range" in capsys.readouterr().err
    assert not (tmp_path / "never" / "reference.zarr").exists()  # refused before the reference capture


def _file(tmp_path, name, **tensors):
    return save_vector_file(tmp_path / f"{name}.safetensors", **tensors)


def _small_vectors(model_dir, tmp_path):
    from nnsight_codi.activation_capture import CaptureConfig, run_capture
    from nnsight_codi.interventions import save_vectors, vectors_from_store

    store = tmp_path / "ref.zarr"
    run_capture(store, CaptureConfig(model=str(model_dir), limit=3, seed=2, max_new_tokens=2,
                                     variables=("hidden", "latent_input", "kv", "correct")), progress=False)
    return save_vectors(vectors_from_store(open_store(store)), tmp_path / "vec.zarr")


def test_sweep_json_reports_true_seconds_and_throughput(model_dir, tmp_path, capsys):
    """`seconds` is the wall time of this sweep (measured around the call here), and
    `runs_per_second` = runs_now / seconds (a clock reused as a loop variable gave 12439 s once)."""
    cfg_path = tmp_path / "sweep.json"
    cfg_path.write_text(json.dumps(_config(model_dir, limit=6, modes=["hidden"], pairs=[[1, 2]], baselines=["zero"])))
    t0 = time.perf_counter()
    assert main(["sweep", str(cfg_path), "--out", str(tmp_path / "o"), "--json"]) == 0
    wall = time.perf_counter() - t0
    summary = json.loads(capsys.readouterr().out)
    assert 0 < summary["seconds"] <= wall + 1e-3
    assert summary["runs_now"] == summary["conditions"] * 6
    assert summary["runs_per_second"] == pytest.approx(summary["runs_now"] / summary["seconds"], rel=5e-3)  # seconds is rounded to 1 ms
