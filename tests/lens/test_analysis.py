"""The lens-study analysis runs from stores alone, in a process that never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_analysis_from_stores_without_torch(study_dir, tmp_path):
    code = (
        "import sys, json\n"
        "from analyses.lens_study import analyse\n"
        f"r = analyse({str(study_dir)!r}, {str(tmp_path / 'a')!r}, probe_folds=2)\n"
        "assert 'torch' not in sys.modules, 'the analysis imported torch'\n"
        "assert 'nnsight' not in sys.modules\n"
        "print(json.dumps({k: r[k] for k in ('lenses', 'accuracy_vs_latents', 'figures')}, default=str))\n"
        "print(json.dumps(r['detection'][:3], default=str))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[0])
    assert summary["lenses"] == ["logit", "tuned-latents"]
    assert [r["num_latents"] for r in summary["accuracy_vs_latents"]] == [0, 2]
    assert {Path(f).name for f in summary["figures"]} >= {"lens_heatmap.png", "detection_rates.png",
                                                          "probe_accuracy.png", "accuracy_vs_latents.png"}
    row = json.loads(done.stdout.splitlines()[1])[0]
    assert {"lens", "step_name", "layer", "k", "target", "rate", "ci_low", "ci_high", "chance"} <= set(row)


def test_analysis_and_report_with_torch_and_nnsight_blocked(study_dir, tmp_path):
    from torch_blocker import run_blocked

    out = tmp_path / "b"
    done = run_blocked(
        "import json\nfrom analyses import lens_study\nfrom nnsight_codi.reporting import write_study\n"
        f"r = lens_study.analyse({str(study_dir)!r}, {str(out)!r}, probe_folds=2)\n"
        "r['config'] = {'limit': 12}\n"
        f"write_study({str(out)!r}, lens_study, r)\n"
        "print(json.dumps(r['headline']))\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == json.loads((out / "results.json").read_text())["headline"]
    assert (out / "report.md").read_text().startswith("# Lens study")


def test_analysis_tables(study_dir):
    from analyses.lens_study import analyse

    r = analyse(study_dir, probes=False)
    det = r["detection"]
    assert {d["target"] for d in det} == {"intermediate", "answer", "near_miss", "operand"}
    assert all(d["ci_low"] <= d["rate"] <= d["ci_high"] for d in det if d["n"])
    assert len(r["odd_even"]) == 2 * 6 * 5  # lenses × latents × layers
    assert r["worked_examples"][0]["steps"][1]["step_name"] == "latent1"
    assert r["early_answer"] == [{**a, "answer_after_latent": a["num_latents"]} for a in r["accuracy_vs_latents"]]


def test_analysis_cli_bad_path(tmp_path, capsys):
    from analyses.lens_study import main

    assert main([str(tmp_path / "missing")]) == 2
    assert "neither" in capsys.readouterr().err
