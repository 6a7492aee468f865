"""One loop, every family: the pause control, per-row numbers of latents, forking and both executors for
CODI (a fabricated converted model) and Coconut (a fabricated checkpoint in its own layout)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from factories import LatentInputs, make_converted

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from coconut_fixtures import QUESTIONS as COCONUT_QUESTIONS  # noqa: E402
from coconut_fixtures import fabricate  # noqa: E402

from nnsight_codi.loading import load_model  # noqa: E402
from nnsight_codi.models.family import Feedback, family  # noqa: E402
from nnsight_codi.tracing.branches import Branch, run_branches  # noqa: E402
from nnsight_codi.tracing.loop import run_loop  # noqa: E402

CODI_QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "how many pens ?",
                  "he loses 2 pens .", "tom has 12 pens . he loses 5 pens . he gets 9 more . how many ?"]


@pytest.fixture(scope="module", params=["codi", "coconut"])
def model_and_questions(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "codi":
        return load_model(make_converted(root, "gpt2", num_latents=3)), CODI_QUESTIONS
    base, ckpt = fabricate("gpt2", root)
    return load_model(ckpt, base=str(base), num_latents=3), COCONUT_QUESTIONS[:4]


@pytest.mark.parametrize("remote", [None, "local"])
def test_pause_feeds_the_constant_on_both_executors(model_and_questions, remote):
    model, questions = model_and_questions
    pause = model.pause_feedback()
    token = getattr(model.codi_config, family(model.latent_family).pause_token)
    assert torch.equal(pause.vector, model._module.get_input_embeddings().weight[token])
    tokens, records = run_loop(model, model.encode(questions), [LatentInputs(3)], num_latents=3, max_new_tokens=5,
                               remote=remote, feedback="pause")
    assert [r[1] for r in records] == [1, 2, 3]
    for _, _, value in records:
        assert torch.equal(value, pause.vector.expand(len(questions), -1))
    own, own_records = run_loop(model, model.encode(questions), [LatentInputs(3)], num_latents=3, max_new_tokens=5,
                                remote=remote)
    assert not torch.equal(own_records[0][2], records[0][2])  # the family's own feedback is not the constant
    # pause batched == pause one at a time, and == the traced driver
    for row, question in enumerate(questions):
        single, _ = run_loop(model, model.encode([question]), num_latents=3, max_new_tokens=5, feedback=pause)
        assert tokens[row, : single.shape[1]].tolist() == single[0].tolist()


def test_per_row_latents_equal_each_row_alone(model_and_questions):
    model, questions = model_and_questions
    counts = torch.tensor([0, 3, 1, 2][: len(questions)])
    prompts = model.encode(questions).with_condition(row_latents=counts)
    batched = model.latent_generate(prompts, num_latents=3, max_new_tokens=6)
    for row, question in enumerate(questions):
        alone = model.latent_generate(model.encode([question]), num_latents=int(counts[row]), max_new_tokens=6)
        assert batched[row, : alone.shape[1]].tolist() == alone[0].tolist()
    with pytest.raises(ValueError, match="exact masking"):
        model.latent_generate(prompts, num_latents=3, max_new_tokens=2, masking="reference")
    with pytest.raises(ValueError, match="0..3"):
        model.latent_generate(model.encode(questions).with_condition(row_latents=counts + 4), num_latents=3)


def test_forked_runs_equal_whole_runs(model_and_questions):
    model, questions = model_and_questions
    branches = [Branch(), Branch([LatentInputs(2)], num_latents=2), Branch(num_latents=4)]
    for remote in (None, "local"):
        forked = run_branches(model, model.encode(questions), branches, num_latents=3, max_new_tokens=5, remote=remote)
        whole = run_branches(model, model.encode(questions), branches, num_latents=3, max_new_tokens=5, remote=remote,
                             fork=False)
        for (t1, r1), (t2, r2) in zip(forked, whole):
            assert torch.equal(t1, t2)
            assert len(r1) == len(r2) and all(torch.equal(a[2], b[2]) for a, b in zip(r1, r2))


def test_soft_feedback_mixes_top_k_embeddings(model_and_questions):
    model, questions = model_and_questions
    _, records = run_loop(model, model.encode(questions[:2]), [LatentInputs(1)], num_latents=1, max_new_tokens=2,
                          feedback=Feedback.soft(top_k=1))
    # top-1: the embedding of the bot step's greedy next token, computed independently here
    with torch.no_grad():
        out = model._module(**{k: v for k, v in model.encode(questions[:2]).__dict__.items()
                               if k in ("input_ids", "attention_mask")},
                            position_ids=(model.encode(questions[:2]).attention_mask.cumsum(-1) - 1).clamp(min=0))
        top = out.logits[:, -1].argmax(-1)
    assert torch.allclose(records[0][2], model._module.get_input_embeddings().weight[top], atol=1e-6)


def test_step_names_and_family_in_model(model_and_questions):
    model, _ = model_and_questions
    assert model.step_names(2) == ["bot", "latent1", "latent2", "eot"]
    assert model.latent_family in ("codi", "coconut")
    assert model.condition_feedback("latent") is None
    with pytest.raises(ValueError, match="unknown feedback condition"):
        model.condition_feedback("nope")
