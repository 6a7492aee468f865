"""Detection logic on hand-made cases, GSM8K annotations from real lines, settling, probes,
early answering = fewer latents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnsight_codi.lens.values import (
    calculator_results,
    dataset_truth,
    hits,
    one_op_away,
    other_problem,
    problem_truth,
    settle_step,
    target_sets,
    token_values,
)
from nnsight_codi.probes import probe

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "gsm8k_test_head20.jsonl"


def test_target_sets_and_near_misses():
    t = {"answer": 360.0, "intermediates": [180.0, 360.0], "operands": [2.0, 180.0, 7.0]}
    s = target_sets(t)
    assert s["answer"] == {360.0} and s["intermediate"] == {180.0}
    assert {720.0, 350.0, 361.0, 370.0} <= s["near_miss"] and 180.0 in s["near_miss"] | s["intermediate"]
    assert 360.0 not in s["near_miss"] and 180.0 not in s["near_miss"]  # the sets are disjoint
    assert s["operand"] == {2.0, 7.0}


def test_hits_and_chance_on_hand_made_readouts():
    vocab = ["The", " 720", "7", "180", "360", "+"]
    values = token_values(vocab)
    assert np.isnan(values[0]) and values[1] == 720.0
    # two examples, one step, one layer, top-3 read-outs (token ids)
    ids = np.array([[[[1, 3, 0]]], [[[0, 5, 4]]]])
    truth = [{"answer": 360.0, "intermediates": [180.0, 360.0], "operands": [7.0]},
             {"answer": 21.0, "intermediates": [24.0, 21.0], "operands": [3.0]}]
    sets = [target_sets(t) for t in truth]
    v = values[ids]
    assert hits(v, [s["near_miss"] for s in sets], 1)[:, 0, 0].tolist() == [True, False]  # 720 for 360
    assert hits(v, [s["intermediate"] for s in sets], 1)[:, 0, 0].tolist() == [False, False]
    assert hits(v, [s["intermediate"] for s in sets], 2)[:, 0, 0].tolist() == [True, False]
    chance = hits(v, other_problem([s["answer"] for s in sets]), 3)[:, 0, 0]
    assert chance.tolist() == [False, True]  # example 2 shows 360, example 1's answer


def test_gsm8k_calculator_annotations_from_real_lines():
    rows = [json.loads(l) for l in FIXTURE.read_text().splitlines()[:3]]
    assert calculator_results(rows[0]["answer"]) == [9.0, 18.0]
    t = problem_truth(rows[0]["question"], rows[0]["answer"])
    assert t["answer"] == 18.0 and t["intermediates"] == [9.0, 18.0] and 16.0 in t["operands"]
    for row in rows:
        t = problem_truth(row["question"], row["answer"])
        assert t["intermediates"] and t["intermediates"][-1] == t["answer"]


def test_synthetic_truth_is_exact():
    from nnsight_codi.data.synthetic import generate_problems

    ds = generate_problems(5, seed=0)
    for row, t in zip(ds, dataset_truth(ds)):
        assert t["answer"] == row["answer_value"] and t["intermediates"] == row["intermediates"]


def test_settling_and_one_operation():
    top1 = np.array([[5, 6, 7, 7], [1, 1, 1, 1], [2, 3, 2, 3]])
    assert settle_step(top1).tolist() == [2, 0, 3]
    assert one_op_away(20, 21, [1.0]) and one_op_away(42, 21, [2.0]) and one_op_away(7, 21, [3.0])
    assert not one_op_away(20, 21, [5.0]) and not one_op_away(float("nan"), 21, [1.0])


def test_probe_beats_chance_on_signal_not_on_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    X = rng.normal(size=(200, 16))
    X[:, 3] += 4 * y
    r = probe(X, y, folds=3)
    assert r.accuracy > 0.7 and r.baseline < 0.4
    noise = probe(rng.normal(size=(200, 16)), y, folds=3)
    assert noise.accuracy < r.baseline + 0.12  # no better than the majority class, up to noise


def test_early_answer_is_running_with_fewer_latents(tiny):
    """Stopping after latent k and feeding eot = running with k latents: steps 0..k are the same."""
    from nnsight_codi.tracing.capture_hook import Capture, assemble
    from nnsight_codi.tracing.loop import run_loop

    prompts = tiny.encode(["Tom has 4 boxes with 6 pens each . He loses 3 pens . How many pens does Tom have now ?",
                           "Mia has 40 coins . She gives 4 to a friend . How many are left ?"])
    runs = {}
    for k in (2, 6):
        hook = Capture(["hidden"], range(5), k)
        tokens, records = run_loop(tiny, prompts, [hook], num_latents=k, max_new_tokens=6)
        runs[k] = (assemble(records, hook, prompts.attention_mask, 1, 128)["hidden"], tokens)
    np.testing.assert_allclose(runs[6][0][:, :3], runs[2][0][:, :3], atol=1e-5)  # bot, latent1, latent2
    # the early answer itself: eot after latent 2, decoded greedily, is what num_latents=2 answers
    assert tiny.decode(runs[2][1]) == tiny.answer([q for q in ["Tom has 4 boxes with 6 pens each . He loses 3 pens . How many pens does Tom have now ?",
                                                               "Mia has 40 coins . She gives 4 to a friend . How many are left ?"]],
                                                  num_latents=2, max_new_tokens=6)
