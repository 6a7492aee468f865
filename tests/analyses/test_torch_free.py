"""Every `analyses/` module imports and runs from a store with torch and nnsight absent: each one runs in
a subprocess whose import system refuses both (the lens study's run is in tests/lens/test_analysis.py,
on the stores its fixtures capture)."""

from __future__ import annotations

import json
import pkgutil
import warnings

import numpy as np
import xarray as xr
from torch_blocker import run_blocked

import analyses

MODULES = sorted(m.name for m in pkgutil.iter_modules(analyses.__path__) if not m.name.startswith("_"))


def test_the_blocker_blocks():
    done = run_blocked("import torch\n")
    assert done.returncode != 0 and "torch is blocked" in done.stderr


def test_every_analysis_module_imports_without_torch():
    """One subprocess imports every module in turn; each import is reported, so one failure names its module."""
    done = run_blocked(
        "import importlib, json, traceback\nfailed = {}\n"
        f"for name in {MODULES!r}:\n"
        "    try:\n"
        "        importlib.import_module(f'analyses.{name}')\n"
        "        assert 'torch' not in sys.modules and 'nnsight' not in sys.modules, 'torch or nnsight imported'\n"
        "    except BaseException:\n"
        "        failed[name] = traceback.format_exc()[-1500:]\n"
        "print(json.dumps(failed))\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(MODULES) >= 6
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def _sweep_dir(path):
    """A hand-made sweep directory: unsteered, the extra step alone, hidden and KV at latent 1, KV at all
    latents, a zero patch; 12 problems."""
    from nnsight_codi.store import StoreWriter
    from nnsight_codi.store.sweep_store import SWEEP_STORE, SWEEP_VARIABLES

    conds = [{"name": "none", "mode": "none"},
             {"name": "none+x", "mode": "none", "extra_latent_step": True},
             {"name": "hidden:1-2:c+1@1L1+x", "mode": "hidden", "pair": [1, 2], "coef": 1.0, "at": 1, "layer": 1,
              "extra_latent_step": True},
             {"name": "kv:1-2:k+1,v+1:latent1", "mode": "kv", "pair": [1, 2], "coef_k": 1.0, "coef_v": 1.0,
              "positions": "latent1"},
             {"name": "kv:1-2:k+1,v+1", "mode": "kv", "pair": [1, 2], "coef_k": 1.0, "coef_v": 1.0,
              "positions": "latents"},
             {"name": "patch:zero", "mode": "patch", "patch": "zero"}]
    ids = [f"e{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    gold = rng.integers(1, 50, size=12).astype(np.float64)
    units = [f"{c['name']}|{e}" for c in conds for e in ids]
    pred = np.concatenate([np.where(rng.random(12) < 0.7, gold, gold + 1) for _ in conds])
    with StoreWriter(path / SWEEP_STORE, variables=SWEEP_VARIABLES, coords={"example": units}, chunk=len(units),
                     config={"interventions": conds, "examples": ids, "num_latents": 2, "model_id": "hand"}) as w:
        w.write(np.arange(len(units)), {"answer_pred": pred, "answer_gold": np.tile(gold, len(conds)),
                                        "correct": pred == np.tile(gold, len(conds))})
    return path


def _patching_dir(path):
    """A hand-made patching-study directory (patching.zarr, anchors.zarr) of 10 problems, 2 latents."""
    rng = np.random.default_rng(0)
    n, steps, layers, k = 10, 4, 3, 2
    with warnings.catch_warnings():  # zarr: fixed-length strings have no v3 specification yet
        warnings.simplefilter("ignore", FutureWarning)
        xr.Dataset({"logprob": (("example", "step", "layer"), rng.normal(size=(n, steps, layers))),
                    "recovered": (("example", "step", "layer"), rng.random((n, steps, layers)) < 0.5),
                    "clean_logprob": ("example", rng.normal(size=n)), "corrupt_logprob": ("example", rng.normal(size=n)),
                    "corrupt_recovered": ("example", rng.random(n) < 0.3)},
                   coords={"example": [f"e{i}" for i in range(n)], "step": np.arange(steps), "layer": np.arange(layers),
                           "step_name": ("step", ["bot", "latent1", "latent2", "eot"])}
                   ).to_zarr(path / "patching.zarr", mode="w", consolidated=False)
        xr.Dataset({"logprob": (("example", "kind", "latent"), rng.normal(size=(n, 2, k)) - 1),
                    "correct": (("example", "kind", "latent"), rng.random((n, 2, k)) < 0.6),
                    "base_logprob": ("example", np.zeros(n)), "base_correct": ("example", rng.random(n) < 0.8),
                    "attention": (("example", "latent"), rng.random((n, k)))},
                   coords={"example": [f"e{i}" for i in range(n)], "kind": ["zero", "mean"], "latent": [1, 2]}
                   ).to_zarr(path / "anchors.zarr", mode="w", consolidated=False)
    return path


def _vector_store(path):
    """A CoT-vector store: per-question steering differences at two layers."""
    from nnsight_codi.store import StoreWriter

    diff = np.random.default_rng(0).normal(size=(6, 2, 8)).astype(np.float32)
    with StoreWriter(path, variables=["steering_diff"], coords={"example": [f"q{i}" for i in range(6)], "layer": [1, 2]},
                     sizes={"dim": 8}, chunk=6) as w:
        w.write(np.arange(6), {"steering_diff": diff})
    return path


def _overview_store(path):
    from nnsight_codi.store import StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(path, variables=["hidden", "correct"], config={"num_latents": 1},
                     coords={"example": [f"e{i}" for i in range(6)], "layer": [0, 1]}, sizes={"dim": 4}, chunk=6) as w:
        w.write(np.arange(6), {"hidden": rng.normal(size=(6, 3, 2, 4)).astype(np.float32),
                               "correct": rng.random(6) < 0.5})
    return path


def _check(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_steering_runs_without_torch(tmp_path):
    sweep = _sweep_dir(tmp_path / "sweep")
    out = tmp_path / "out"
    r = _check(run_blocked(
        "import json\nfrom analyses import steering, steering_report\n"
        f"r = steering.analyse({str(sweep)!r}, {str(out)!r})\n"
        "lines = steering_report.headline({**r, 'config': {}})\n"
        "print(json.dumps({'conditions': len(r['table']), 'headline': lines, 'figures': r['figures'],"
        " 'sites': len(r['by_site'])}))\n"))
    assert r["conditions"] == 6 and r["headline"][0].startswith("Unsteered accuracy") and r["sites"] >= 2
    assert all((out / "figures").joinpath(f.split("/")[-1]).exists() for f in r["figures"])


def test_patching_runs_and_reports_without_torch(tmp_path):
    study = _patching_dir(tmp_path / "p")
    r = _check(run_blocked(
        "import json\nfrom analyses import patching\nfrom nnsight_codi.reporting import write_study\n"
        f"r = patching.analyse({str(study)!r}, {str(study)!r})\n"
        "r['config'] = {'limit': 10}\n"
        f"write_study({str(study)!r}, patching, r)\n"
        "print(json.dumps({'headline': r['headline'], 'rows': len(r['compared_with_source'])}))\n"))
    assert len(r["headline"]) >= 3 and r["rows"] >= 1
    report = (study / "report.md").read_text()
    assert report.startswith("# Patching study") and "## Compared with the source" in report
    assert json.loads((study / "results.json").read_text())["headline"] == r["headline"]


def test_attention_runs_and_reports_without_torch(tmp_path):
    from attention.test_attention_analysis import hand_store

    hand_store(tmp_path / "s.zarr", blocks=2)
    out = tmp_path / "out"
    r = _check(run_blocked(
        "import json\nfrom analyses import attention\nfrom nnsight_codi.reporting import write_study\n"
        f"r = attention.analyse({str(tmp_path / 's.zarr')!r}, {str(out)!r})\n"
        f"write_study({str(out)!r}, attention, r)\n"
        "print(json.dumps({'headline': r['headline'], 'sections': [s for s, _ in attention.report_sections(r)]}))\n"))
    assert r["headline"] and "Dashboard" not in r["sections"] and r["sections"][-1] == "Definitions"
    assert (out / "report.md").read_text().startswith("# Attention across latents")


def test_cot_vectors_runs_without_torch(tmp_path):
    store = _vector_store(tmp_path / "vectors.zarr")
    r = _check(run_blocked(
        "import json\nfrom analyses import cot_vectors\n"
        f"r = cot_vectors.analyse({str(store)!r}, {str(tmp_path / 'out')!r})\n"
        "print(json.dumps({'layers': [v['layer'] for v in r['vectors']], 'figures': r['figures']}))\n"))
    assert r["layers"] == [1, 2] and len(r["figures"]) == 1


def test_store_overview_runs_without_torch(tmp_path):
    store = _overview_store(tmp_path / "s.zarr")
    r = _check(run_blocked(
        "import json\nfrom analyses import store_overview\n"
        f"r = store_overview.overview({str(store)!r})\n"
        f"store_overview.plot({str(store)!r}, {str(tmp_path / 'fig.png')!r})\n"
        "print(json.dumps({'accuracy': r['accuracy']}))\n"))
    assert 0 <= r["accuracy"] <= 1 and (tmp_path / "fig.png").exists()


def test_cross_family_reports_without_torch(tmp_path):
    results = {"models": [{"model": "m", "latent_family": "coconut", "num_latents": 1, "n": 2,
                           "accuracy_by_k": {"latent": {"0": 0.5, "1": 1.0}, "pause": {"0": 0.5, "1": 0.5}},
                           "lens": {}, "ablation": {"latent1": 0.5}}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    done = run_blocked(f"from analyses import cross_family\nassert cross_family.main([{str(tmp_path / 'results.json')!r}]) == 0\n"
                       "assert 'torch' not in sys.modules\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| latent | 50% | 100% |" in (tmp_path / "report.md").read_text()


def test_every_analysis_module_is_covered():
    covered = {"steering", "patching", "attention", "cot_vectors", "store_overview", "lens_study", "cross_family",
               # report modules: steering_report runs above; lens_report renders in tests/lens/test_analysis.py
               "steering_report", "lens_report"}
    assert set(MODULES) == covered, "a new analyses module needs a torch-free run here"
