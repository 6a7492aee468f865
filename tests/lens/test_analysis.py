"""The lens-study analysis runs from stores alone, in a process where torch and nnsight cannot be imported,
and its tables hold what the stores say. (That every `analyses/` module imports without torch and
answers a bad path in one line is checked for all of them in tests/analyses/.)"""

from __future__ import annotations

import json
from pathlib import Path

from torch_blocker import run_blocked


def test_analysis_and_report_with_torch_and_nnsight_blocked(study_dir, tmp_path):
    out = tmp_path / "b"
    done = run_blocked(
        "import json\nfrom analyses import lens_report, lens_study\nfrom nnsight_codi.reporting import write_study\n"
        f"r = lens_study.analyse({str(study_dir)!r}, {str(out)!r}, probe_folds=2)\n"
        "assert 'torch' not in sys.modules and 'nnsight' not in sys.modules\n"
        "r['config'] = {'limit': 12}\n"
        f"write_study({str(out)!r}, lens_report, r)\n"
        "print(json.dumps(r['headline']))\n")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert json.loads(done.stdout.splitlines()[-1]) == results["headline"]
    assert (out / "report.md").read_text().startswith("# Lens study")
    assert results["lenses"] == ["logit", "tuned-latents"]
    assert [r["num_latents"] for r in results["accuracy_vs_latents"]] == [0, 2]
    assert {Path(f).name for f in results["figures"]} >= {"lens_heatmap.png", "detection_rates.png",
                                                          "probe_accuracy.png", "accuracy_vs_latents.png"}
    assert {"lens", "step_name", "layer", "k", "target", "rate", "ci_low", "ci_high", "chance"} <= \
        set(results["detection"][0])


def test_analysis_tables(study_dir):
    from analyses.lens_study import analyse

    r = analyse(study_dir, probes=False)
    det = r["detection"]
    assert {d["target"] for d in det} == {"intermediate", "answer", "near_miss", "operand"}
    assert all(d["ci_low"] <= d["rate"] <= d["ci_high"] for d in det if d["n"])
    assert len(r["odd_even"]) == 2 * 6 * 5  # lenses × latents × layers
    assert r["worked_examples"][0]["steps"][1]["step_name"] == "latent1"
    assert r["early_answer"] == [{**a, "answer_after_latent": a["num_latents"]} for a in r["accuracy_vs_latents"]]
