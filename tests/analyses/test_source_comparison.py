"""The "Compared with the source" tables are generated from results.json (no numbers of their own), the
baselines beside the rates equal hand counts on small stores, and the steering study's matched sites
are read back site by site as they were run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from nnsight_codi.reporting import COMPARISON_HEADING, comparison_section

ROOT = Path(__file__).resolve().parents[2]


def closing_section(report: str) -> str:
    head = f"## {COMPARISON_HEADING}\n\n"
    assert head in report and report.rstrip().endswith(report[report.index(head):].rstrip()), "not the last section"
    return report[report.index(head) + len(head):].strip()


def test_lens_table_is_regenerated_from_the_committed_results_and_follows_them():
    from analyses.lens_report import compare_with_source

    out = ROOT / "results" / "lens_1000"
    results = json.loads((out / "results.json").read_text())
    rows = compare_with_source(results)
    assert rows == results["compared_with_source"]
    assert closing_section((out / "report.md").read_text()) == comparison_section(rows)[1].strip()
    # change a number in results.json: the table follows it (it holds no number of its own)
    changed = copy.deepcopy(results)
    zero = next(r for r in changed["accuracy_vs_latents"] if r["num_latents"] == 0)
    zero["accuracy"], zero["ci_low"], zero["ci_high"] = 0.4321, 0.4, 0.45
    row = compare_with_source(changed)[-1]
    assert "43.2% [40.0, 45.0]" in row["baseline"] and "43.2%" not in rows[-1]["baseline"]
    for p in changed["parity"]:
        p["odd_minus_even"], p["ci_low"], p["ci_high"] = -0.3, -0.35, -0.25
    odd_even = next(r for r in compare_with_source(changed) if r["source"].startswith("Scratchpad"))
    assert odd_even["verdict"] == "agree" and "-0.30 [-0.35, -0.25]" in odd_even["ours"]


@pytest.mark.parametrize("study", ["cot_vectors_v2", "cot_vectors_v2_last_prompt", "cot_vectors_v1"])
def test_committed_cot_reports_end_with_the_table_of_their_results(study):
    from analyses.cot_vectors import compare_with_source

    results = json.loads((ROOT / "results" / study / "results.json").read_text())
    assert results["compared_with_source"] == compare_with_source(results)
    report = (ROOT / "results" / study / "report.md").read_text()
    assert closing_section(report) == comparison_section(compare_with_source(results))[1].strip()


def test_cot_table_reads_the_study_results():
    from analyses.cot_vectors import compare_with_source

    results = json.loads((ROOT / "results" / "cot_vectors_v2" / "results.json").read_text())
    rows = compare_with_source(results)
    cot = next(r for r in results["conditions"] if r["name"] == "cot")
    assert rows and all(f"{100 * cot['accuracy']:.1f}%" in r["baseline"] for r in rows[:1])
    results["conditions"] = [dict(r, accuracy=0.99, ci_low=0.98, ci_high=1.0) if r["name"] not in ("direct", "cot")
                             else r for r in results["conditions"]]
    assert compare_with_source(results)[0]["verdict"] == "agree"


def test_number_base_rate_and_uniform_baselines_equal_hand_counts(tmp_path):
    from attention.test_attention_analysis import PROMPT, hand_store

    from analyses.attention import alternation_table, number_base_rate, summarize

    ds, _ = hand_store(tmp_path / "s.zarr")
    # "Tom has 12 apples and 3 pears <bot>": 2 number tokens among 7 prompt tokens (bot is not a prompt token)
    numbers = sum(t.isdigit() for t in PROMPT)
    prompt = len(PROMPT) - 1
    assert (numbers, prompt) == (2, 7)
    assert number_base_rate(ds)["value"] == pytest.approx(numbers / prompt)
    table = alternation_table(ds)
    focus = table[table.readout == "number focus"].set_index("latent")["uniform"]
    np.testing.assert_allclose(focus.values, numbers / prompt)
    prev = table[table.readout == "previous latent"].set_index("latent")["uniform"]
    assert prev[2] == pytest.approx(1 / (len(PROMPT) + 2))   # latent2 attends positions 0..9: 10 positions
    operand = table[table.readout == "operand mass"].set_index("latent")["uniform"]
    assert operand[1] == pytest.approx(2 / (len(PROMPT) + 1))  # operands 12 and 3 among latent1's 9 positions
    rows = summarize(ds)
    from analyses.attention import compare_with_source

    cmp = compare_with_source(rows)
    assert cmp and f"{100 * numbers / prompt:.1f}%" in cmp[0]["baseline"]


def test_spearman_importance_attention_point_and_ci(tmp_path):
    import xarray as xr
    from scipy.stats import spearmanr

    from analyses.patching import importance_attention_spearman

    rng = np.random.default_rng(0)
    n, k = 30, 4
    lp = rng.normal(size=(n, 2, k)) - np.array([3.0, 1.0, 0.5, 0.0])
    att = rng.random((n, k)) * 0.1 + np.array([0.3, 0.2, 0.1, 0.0])
    ds = xr.Dataset({"logprob": (("example", "kind", "latent"), lp), "base_logprob": ("example", np.zeros(n)),
                     "attention": (("example", "latent"), att)}, coords={"latent": np.arange(1, k + 1)})
    rho = importance_attention_spearman(ds)
    want = spearmanr(-lp.mean(axis=(0, 1)), att.mean(0)).statistic
    assert rho["value"] == pytest.approx(want) and rho["n_problems"] == n
    assert rho["ci_low"] <= rho["value"] <= rho["ci_high"]


@pytest.fixture(scope="module")
def steering_study(tmp_path_factory):
    from runs.steering_study import Config, run

    out = tmp_path_factory.mktemp("steer")
    config = Config(limit=8, reference_limit=16, coefs=(2.0,), pairs="1-6", batch_size=8, headroom_limit=8)
    return out, config, run(config, out, progress=False)


def test_steering_sites_are_read_back_as_run_and_the_table_comes_from_results(steering_study):
    from nnsight_codi.store.sweep_store import open_sweep

    out, config, results = steering_study
    saved = json.loads((out / "results.json").read_text())
    from analyses.steering_report import compare_with_source

    assert compare_with_source(saved) == saved["compared_with_source"]
    assert closing_section((out / "report.md").read_text()) == comparison_section(saved["compared_with_source"])[1].strip()
    # every hidden site has its KV twin at the same latent; the seed's design is in the sweep
    sites = saved["by_site"]
    latents = [f"latent{k}" for k in range(1, 7)]
    assert sorted({r["latent"] for r in sites if r["route"] == "kv"}) == sorted(latents + ["all"])
    assert {(r["latent"], r["layer"]) for r in sites if r["route"] == "hidden"} == {
        (l, layer) for l in latents for layer in (0, 1, 2, 4)}
    assert all(r.get("route_diff") is not None for r in sites if r["route"] == "hidden")
    assert [r["conditions"] for r in saved["seed_design"]] == [4, 1]
    # answers changed at a KV site = a hand count on the sweep store
    ds = open_sweep(out / "sweep")
    pred = ds["answer_pred"]
    base = pred.sel(condition="none").values
    name = "kv:1-6:k+2,v+2:latent1"
    hand = np.mean(pred.sel(condition=name).values != base)
    row = next(r for r in sites if r["route"] == "kv" and r["latent"] == "latent1")
    assert row["changed"] == pytest.approx(hand)
    assert "headroom" in saved and saved["headroom"]["tested"] == len(
        [r for r in saved["table"] if r["mode"] in ("hidden", "kv")])
