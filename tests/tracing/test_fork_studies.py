"""Studies that fork the loop: early answering (accuracy vs K) and the steer command's paired runs equal
their unforked versions exactly."""

from __future__ import annotations

import pytest
import torch
from factories import make_converted

from nnsight_codi.evaluation import answers_by_latent_count, evaluate, evaluate_latent_counts
from nnsight_codi.interventions import Condition, Resources, save_vector_file
from nnsight_codi.interventions.conditions import evaluate_conditions
from nnsight_codi.loading import load_model

QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "how many pens ?",
             "he loses 2 pens .", "tom has 12 pens . he loses 5 pens . he gets 9 more . how many ?"]


@pytest.fixture(scope="module")
def codi(tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp("f"), "gpt2", num_latents=3))


@pytest.mark.parametrize("masking", ["exact", "reference"])
def test_early_answering_equals_a_run_per_latent_count(codi, masking):
    forked = answers_by_latent_count(codi, QUESTIONS, batch_size=4, max_new_tokens=5, masking=masking, progress=False)
    assert sorted(forked) == [0, 1, 2, 3]
    for k, texts in forked.items():  # one batch: the same padding as a plain run of all four
        with torch.inference_mode():
            whole = codi.answer(QUESTIONS, num_latents=k, max_new_tokens=5, masking=masking)
        assert texts == whole, k
    assert forked == answers_by_latent_count(codi, QUESTIONS, batch_size=4, max_new_tokens=5, masking=masking,
                                             progress=False, fork=False)
    with pytest.raises(ValueError, match="distinct"):
        answers_by_latent_count(codi, QUESTIONS, [1, 1])


def test_accuracy_by_latent_count_matches_evaluate(codi):
    ds = {"id": list(range(4)), "question": QUESTIONS, "answer": ["#### 7", "#### 3", "#### 2", "#### 16"]}
    by_k = evaluate_latent_counts(codi, ds, [0, 2], batch_size=4, max_new_tokens=5, progress=False)
    for k, result in by_k.items():
        ref = evaluate(codi, ds, batch_size=4, num_latents=k, max_new_tokens=5, progress=False)
        assert [p.prediction_text for p in result.predictions] == [p.prediction_text for p in ref.predictions]


def test_paired_conditions_forked_equal_unforked(codi, tmp_path):
    cfg = codi._module.config
    heads, head_dim = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    g = torch.Generator().manual_seed(3)
    kv = save_vector_file(tmp_path / "kv.safetensors", keys=torch.randn(codi.num_layers, heads, head_dim, generator=g) * 3,
                          values=torch.randn(codi.num_layers, heads, head_dim, generator=g) * 3)
    vec = save_vector_file(tmp_path / "v.safetensors", vector=torch.randn(codi.hidden_size, generator=g) * 20)
    conditions = [Condition("none"), Condition("kv", vector_file=str(kv), coef_k=1.0, coef_v=1.0),
                  Condition("hidden", vector_file=str(vec), coef=1.0, extra_latent_step=True),
                  Condition("hidden", vector_file=str(vec), coef=1.0, at=1, layer=1),
                  Condition("patch", patch=str(vec), at=2)]
    golds = [7.0, 3.0, 2.0, 16.0]
    for remote in (None, "local"):
        forked = evaluate_conditions(codi, QUESTIONS, golds, conditions, Resources(), batch_size=3, max_new_tokens=5,
                                     remote=remote, progress=False)
        whole = evaluate_conditions(codi, QUESTIONS, golds, conditions, Resources(), batch_size=3, max_new_tokens=5,
                                    remote=remote, progress=False, fork=False)
        for name in forked:
            assert forked[name]["texts"] == whole[name]["texts"], (remote, name)
    assert len({tuple(v["texts"]) for v in forked.values()}) > 1  # the conditions changed answers
