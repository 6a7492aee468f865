"""Thought anchors and activation patching: forced answers agree with greedy decoding, patching clean
into clean changes nothing, the attention score equals a hand-computed one; corrupted problems; doctests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import make_converted
from reference_impl import reference_capture

from nnsight_codi.data.synthetic import generate_problems
from nnsight_codi.interventions import ForceAnswer, PatchLatent
from nnsight_codi.interventions.anchors import activation_patching, thought_anchors
from nnsight_codi.interventions.corrupt import NUMBER, corrupt_problem, replay
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.loop import run_loop

QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "how many pens ?",
             "he loses 2 pens .", "tom has 12 pens . he loses 5 pens . he gets 9 more . how many ?"]
K = 2


@pytest.fixture(scope="module")
def codi(tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp("a"), "gpt2", num_latents=K))


@torch.inference_mode()
def test_forced_match_is_greedy_decoding(codi):
    prompts = codi.encode(QUESTIONS)
    base, _ = run_loop(codi, prompts, max_new_tokens=5)
    for scale in (0.5, 20.0):
        patch = PatchLatent(1, torch.randn(codi.hidden_size) * scale)
        greedy, _ = run_loop(codi, prompts, [patch], max_new_tokens=5)
        force = ForceAnswer(base, K, codi.codi_config.eos_id, codi.codi_config.eot_id)
        _, records = run_loop(codi, prompts, [PatchLatent(1, patch.values), force], max_new_tokens=base.shape[1],
                              answer_steps=force.answer_steps)
        same = [codi.decode(greedy[i:i + 1])[0] == codi.decode(base[i:i + 1])[0] for i in range(len(QUESTIONS))]
        assert force.matched(records).tolist() == same


def test_patching_clean_into_clean_changes_nothing(codi):
    out = activation_patching(codi, QUESTIONS, QUESTIONS, batch_size=3, max_new_tokens=5, progress=False)
    assert out["logprob"].shape == (4, K + 2, codi.num_layers + 1)
    np.testing.assert_allclose(out["corrupt_logprob"], out["clean_logprob"], atol=1e-5)
    np.testing.assert_allclose(out["logprob"], out["clean_logprob"][:, None, None] + 0 * out["logprob"], atol=1e-4)
    assert out["recovered"].all() and out["corrupt_recovered"].all()
    other = activation_patching(codi, QUESTIONS, QUESTIONS[::-1], batch_size=4, max_new_tokens=5, progress=False)
    assert not np.allclose(other["corrupt_logprob"], other["clean_logprob"])


def test_thought_anchors_attention_equals_a_hand_computed_score(codi):
    with torch.no_grad(), codi.eager_attention():
        expected = []
        for q in QUESTIONS:
            ref = reference_capture(codi._module, codi.prj._module, codi.prompt_ids(q)[:-1], codi.codi_config.bot_id,
                                    codi.codi_config.eot_id, K)
            plen = len(codi.prompt_ids(q))
            att = [s["attention"] for s in ref["steps"]]                   # step -> [keys]
            expected.append([float(torch.stack([att[s][plen + k - 1] for s in range(k + 1, K + 2)]).mean())
                             for k in range(1, K + 1)])
    ref_latents = np.random.default_rng(0).standard_normal((5, K + 2, codi.hidden_size)).astype(np.float32)
    out = thought_anchors(codi, QUESTIONS, [7.0] * 4, ref_latents, batch_size=4, max_new_tokens=5, progress=False)
    np.testing.assert_allclose(out["attention"], np.array(expected), rtol=1e-4, atol=1e-6)
    assert out["logprob"].shape == (4, 3, K) and out["correct"].shape == (4, 3, K)
    with pytest.raises(ValueError, match="unknown ablation"):
        thought_anchors(codi, QUESTIONS, [7.0] * 4, ref_latents, kinds=["shuffle"], progress=False)


def test_corrupted_problems_replay_to_the_answer():
    ds = generate_problems(100, seed=4, value_range=(0, 99), min_steps=2, max_steps=3, add_range=(1, 5), mul_range=(2, 3))
    made = 0
    for q, ops, answer in zip(ds["question"], ds["operations"], ds["answer_value"]):
        numbers = [int(m.group()) for m in NUMBER.finditer(q)]
        assert replay(numbers, ops) == answer
        out = corrupt_problem(q, ops)
        if out is not None:
            made += 1
            new_q, new_answer = out
            assert new_answer != answer and len(new_q.split()) == len(q.split())
            assert replay([int(m.group()) for m in NUMBER.finditer(new_q)], ops) == new_answer
    assert made >= 90


def test_forked_patching_and_anchors_equal_the_whole_runs(codi):
    """Each patched / ablated run forks from the unpatched one at the step it edits: same numbers, exactly."""
    ref_latents = np.random.default_rng(1).standard_normal((5, K + 2, codi.hidden_size)).astype(np.float32) * 3
    corrupted = QUESTIONS[::-1]
    kw = dict(batch_size=3, max_new_tokens=5, progress=False)
    forked = activation_patching(codi, QUESTIONS, corrupted, **kw)
    whole = activation_patching(codi, QUESTIONS, corrupted, fork=False, **kw)
    for key in ("logprob", "recovered", "clean_logprob", "corrupt_logprob", "corrupt_recovered"):
        np.testing.assert_array_equal(forked[key], whole[key], err_msg=key)
    forked = thought_anchors(codi, QUESTIONS, [7.0] * 4, ref_latents, **kw)
    whole = thought_anchors(codi, QUESTIONS, [7.0] * 4, ref_latents, fork=False, **kw)
    for key in ("logprob", "correct", "base_logprob", "base_correct", "attention"):
        np.testing.assert_array_equal(forked[key], whole[key], err_msg=key)
    assert not np.allclose(forked["logprob"], forked["base_logprob"][:, None, None])  # the ablations did something
