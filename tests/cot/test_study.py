"""The study definition end to end on a tiny chat model, rerun reuse, and the offline analysis."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cot_testlib as lib
import pytest

from runs.cot_vectors_study import Config, demo_config, run


def test_study_writes_results_and_reuses(tmp_path):
    model_dir = lib.save_chat_lm(tmp_path / "lm")
    cfg = Config(model=str(model_dir), extract_limit=4, dev_limit=2, test_limit=4, coefs=(1.0, 4.0), max_new_tokens=4,
                 batch_size=4, layers=(1, 2))
    out = tmp_path / "study"
    res = run(cfg, out, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["vectors"] == str(out / "vectors.zarr")
    assert [r["name"] for r in saved["conditions"]] == ["direct", "cot", "single", "continuous"]
    for row in saved["conditions"]:
        assert {"name", "layer", "coef", "accuracy", "ci_low", "ci_high", "reasoning_rate", "n"} <= set(row)
        assert row["n"] == 4
    assert saved["conditions"][2]["layer"] in (1, 2) and saved["conditions"][2]["coef"] in (1.0, 4.0)
    assert 1 <= len(res["headline"]) <= 9
    # the random-direction control at each schedule's selected point, and the prompt without instruction
    best = saved["best"]
    assert [(c["name"], c["layer"], c["coef"]) for c in saved["controls"]] == [
        (f"random-{s}", best[s]["layer"], best[s]["coef"]) for s in ("single", "continuous")]
    assert [r["name"] for r in saved["no_instruction"]] == ["none", "none+single", "none+continuous"]
    assert {r["prompt"] for r in saved["no_instruction"]} == {"none"}
    for name in ("single", "continuous"):
        g = saved["comparisons"][name]["gap_recovered_ci"]
        assert g["n"] == 4 and (g["value"] is None or g["ci_low"] <= g["value"] <= g["ci_high"])  # None: no gap (NaN)
    assert sorted(p["name"] for p in saved["chain_points"]) == ["continuous", "single"]
    grid = [json.loads(line) for line in (out / "grid.jsonl").read_text().splitlines()[1:]]
    for p in saved["chain_points"]:  # the dev cell with the most chains, evaluated on the test split
        cells = [g for g in grid if g["schedule"] == p["name"]]
        assert p["selected_by"] == "reasoning_rate" and p["n"] == 4
        assert max(g["reasoning_rate"] for g in cells) == next(
            g["reasoning_rate"] for g in cells if (g["layer"], g["coef"]) == (p["layer"], p["coef"]))
        assert {"first_step_match", "prefix_match", "stops_early", "steps", "reference_steps"} <= set(p)
    # per schedule and layer, the dev-best coefficient at that layer, on the test split
    from nnsight_codi.cot import best_points

    assert [(p["name"], p["layer"]) for p in saved["per_layer"]] == [
        (s, layer) for s in ("single", "continuous") for layer in (1, 2)]
    for p in saved["per_layer"]:
        cells = [g for g in grid if g["schedule"] == p["name"] and g["layer"] == p["layer"]]
        assert p["dev_accuracy"] == max(g["accuracy"] for g in cells)
        assert p["coef"] == best_points(cells)[p["name"]]["coef"] and p["n"] == 4
    for row in saved["conditions"][2:]:  # the selected point is its layer's row, with the same test numbers
        twin = next(p for p in saved["per_layer"] if (p["name"], p["layer"]) == (row["name"], row["layer"]))
        assert (twin["coef"], twin["accuracy"], twin["reasoning_rate"]) == (row["coef"], row["accuracy"],
                                                                            row["reasoning_rate"])
    for name in ("grid_heatmaps", "conditions", "vectors"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
    assert "Test conditions" in (out / "report.md").read_text()
    assert "Best coefficient per layer (test)" in (out / "report.md").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in [out / "grid.jsonl", *sorted((out / "test").iterdir())]}
    again = run(cfg, out, progress=False)
    assert again["conditions"] == res["conditions"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing recomputed
    code = ("import sys, analyses.cot_vectors as a; r = a.analyse(sys.argv[1], sys.argv[2]); "
            "assert 'torch' not in sys.modules; print(len(r['vectors']))")
    done = subprocess.run([sys.executable, "-c", code, str(out / "vectors.zarr"), str(tmp_path / "a")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "3"  # layers 0..2, read without torch


def test_rerun_with_other_questions_or_weights_does_not_reuse_old_outputs(tmp_path):
    """Saved test outputs are reused only for the same questions and weights; a model retrained
    under the same path is refused (the vector store names the key) before any work."""
    import dataclasses

    import pytest

    from nnsight_codi.store import ConfigMismatchError

    model_dir = lib.save_chat_lm(tmp_path / "lm")
    cfg = Config(model=str(model_dir), extract_limit=3, dev_limit=2, test_limit=3, coefs=(1.0,), max_new_tokens=3,
                 batch_size=4, layers=(1,))
    out = tmp_path / "study"
    run(cfg, out, progress=False)
    bigger = run(dataclasses.replace(cfg, test_limit=5), out, progress=False)
    assert {r["n"] for r in bigger["conditions"]} == {5}
    lib.save_chat_lm(model_dir, seed=7)  # retrained in place
    stamp = (out / "grid.jsonl").read_text()
    with pytest.raises(ConfigMismatchError, match="model_weights"):
        run(dataclasses.replace(cfg, test_limit=5), out, progress=False)
    assert (out / "grid.jsonl").read_text() == stamp


def test_bad_limits_fail_before_the_extraction(tmp_path):
    import dataclasses

    import pytest

    for name in ("extract_limit", "dev_limit", "test_limit", "batch_size", "max_new_tokens"):
        with pytest.raises(ValueError, match=f"{name} must be >= 1"):
            run(dataclasses.replace(Config(model="/nonexistent-model"), **{name: 0}), tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_demo_config_is_smaller():
    assert demo_config().test_limit < Config().test_limit


def test_chain_agreement_against_hand_counts():
    from nnsight_codi.cot import chain_agreement

    cot = ["<< 2 + 3 = 5 >> << 5 * 2 = 10 >> The answer is : 10",
           "<< 7 - 1 = 6 >> << 6 / 2 = 3 >> The answer is : 3",
           "<< 4 * 4 = 16 >> The answer is : 16"]
    steered = ["<< 2 + 3 = 5 >> The answer is : 5",       # right first step, stops early
               "30 - 1 = 29 >> << 29 / 2 = 14 >> The answer is : 14",  # wrong first step (no opening <<)
               "The answer is : 16"]                       # no chain: not counted
    got = chain_agreement(steered, cot)
    assert got["n_chains"] == 2
    assert got["first_step_match"] == 0.5 and got["prefix_match"] == 0.5
    assert got["stops_early"] == 0.5 and got["steps"] == 1.5
    assert abs(got["reference_steps"] - 5 / 3) < 1e-12
    import pytest

    with pytest.raises(ValueError, match="reference"):
        chain_agreement(steered, cot[:2])


def test_gap_recovery_random_control_and_model_table_against_hand_counts():
    import numpy as np

    from analyses.cot_vectors import gap_recovery, model_comparison, random_like
    from runs.cot_vectors_models import comparison_report

    direct = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]   # 20%
    cot = [1, 1, 1, 1, 1, 1, 1, 1, 1, 0]      # 90%
    steered = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]  # 40%: (0.4 - 0.2) / (0.9 - 0.2) = 2/7
    g = gap_recovery(direct, cot, steered, seed=3)
    assert g["value"] == pytest.approx(2 / 7) and g["ci_low"] <= 2 / 7 <= g["ci_high"] and g["n"] == 10
    assert gap_recovery(direct, direct, steered)["value"] != gap_recovery(direct, direct, steered)["value"]  # no gap: NaN
    v = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    r = random_like(v, seed=1)
    assert np.allclose(np.linalg.norm(r, axis=-1), np.linalg.norm(v, axis=-1), rtol=1e-5)
    cos = (r * v).sum(-1) / (np.linalg.norm(r, axis=-1) * np.linalg.norm(v, axis=-1))
    assert np.all(np.abs(cos) < 0.9) and not np.allclose(random_like(v, seed=1), random_like(v, seed=2))
    row = lambda name, acc, layer=None: {"name": name, "layer": layer, "coef": None if layer is None else 1.0,
                                         "accuracy": acc, "ci_low": acc - 0.1, "ci_high": acc + 0.1,
                                         "reasoning_rate": 0.5, "n": 10}
    res = {"conditions": [row("direct", 0.2), row("cot", 0.9), row("single", 0.4, 2)],
           "comparisons": {"single": {"gap_recovered_ci": g}},
           "controls": [{**row("random-single", 0.3, 2), "gap_recovered_ci": gap_recovery(direct, cot, direct)}]}
    table = model_comparison({"m": res})
    assert list(table.condition) == ["direct", "cot", "single", "random-single"]
    assert table.set_index("condition").loc["single", "gap_recovered"] == pytest.approx(2 / 7)
    assert "| m | single | 2, 1 | 40.0 [30.0, 50.0] | 50.0 | 28.6 [" in comparison_report({"m": res})


def test_report_only_rerenders_a_committed_study_from_its_results_without_the_model(tmp_path, monkeypatch):
    import nnsight_codi.loading as remote
    from nnsight_codi.reporting import COMPARISON_HEADING

    committed = Path(__file__).resolve().parents[2] / "results" / "cot_vectors_v2"
    out = tmp_path / "study"
    shutil.copytree(committed, out)
    # as the study was committed before the comparison section existed
    results = json.loads((out / "results.json").read_text())
    rows = results.pop("compared_with_source")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report = (out / "report.md").read_text()
    (out / "report.md").write_text(report[:report.index(f"\n## {COMPARISON_HEADING}")] + "\n")
    figures = {p.name: p.read_bytes() for p in (out / "figures").iterdir()}

    def no_model(*args, **kwargs):
        raise AssertionError("--report-only loaded the model")

    monkeypatch.setattr(remote, "load_instruct_model", no_model)
    res = run(Config(report_only=True), out, progress=False)
    assert res["compared_with_source"] == rows
    assert (out / "report.md").read_text() == report  # byte for byte the committed report
    assert json.loads((out / "results.json").read_text()) == json.loads((committed / "results.json").read_text())
    assert {p.name: p.read_bytes() for p in (out / "figures").iterdir()} == figures  # figures untouched
    assert set(out.iterdir()) == {out / "figures", out / "report.md", out / "results.json"}


def test_report_only_command_line_and_missing_results(tmp_path):
    done = subprocess.run([sys.executable, "runs/cot_vectors_study.py", "--report-only", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2 and "results.json" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(FileNotFoundError, match="run the study first"):
        run(Config(report_only=True), tmp_path / "y", progress=False)
