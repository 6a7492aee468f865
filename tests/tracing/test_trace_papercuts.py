"""First-hour papercuts of a `latent_generate` trace: step names in `tracer.iter`, text instead of
token ids, autograd history on saved values."""

from __future__ import annotations

import nnsight
import pytest
import torch

from nnsight_codi.loading import load_model
from nnsight_codi.tracing.step_iter import StepIndex


@pytest.fixture(scope="module")
def codi():
    return load_model("tiny")


QUESTIONS = ["Tom has 3 apples and buys 4 more . How many apples does he have ?"]


def test_step_names_compare_true_inside_tracer_iter(codi):
    k = codi.num_latents
    with codi.latent_generate(codi.encode(QUESTIONS), max_new_tokens=4) as tracer:
        seen = nnsight.save([])
        hits = nnsight.save([])
        for step in tracer.iter[: k + 2]:
            seen.append((int(step), step.name))
            if step == "latent3":
                hits.append(int(step))
            _ = codi.transformer.h[0].output
    assert hits == [3]  # plain nnsight yields ints here and `step == "latent3"` is never true
    assert seen == [(i, n) for i, n in enumerate(codi.step_names())]


def test_tracer_iter_takes_names_and_rejects_steps_the_run_does_not_have(codi):
    k = codi.num_latents
    with codi.latent_generate(codi.encode(QUESTIONS), max_new_tokens=4) as tracer:
        got = nnsight.save([])
        for step in tracer.iter["latent1":"eot"]:
            got.append(step.name)
            _ = codi.transformer.h[0].output
    assert got == [f"latent{i}" for i in range(1, k + 1)]
    with pytest.raises(ValueError, match="does not exist"):
        _ = StepIndex(2, num_latents=k) == f"latent{k + 3}"
    with pytest.raises(ValueError, match="unknown step 'latent_3'"):
        _ = StepIndex(2, num_latents=k) == "latent_3"


def test_steering_latent3_by_name_equals_steering_it_by_index(codi):
    def run(at):
        with codi.latent_generate(codi.encode(QUESTIONS), max_new_tokens=6) as tracer:
            for step in tracer.iter[: codi.num_latents + 2]:
                out = codi.transformer.h[1].output
                if step == at:
                    out[:, -1] += 50.0
            ids = tracer.result.save()
        return ids

    plain = codi.latent_generate(codi.encode(QUESTIONS), max_new_tokens=6)
    by_name, by_index = run("latent3"), run(3)
    assert torch.equal(by_name, by_index)
    hidden = {}
    for at in ("latent3", 3, None):
        with codi.latent_generate(codi.encode(QUESTIONS), max_new_tokens=2) as tracer:
            h = nnsight.save([])
            for step in tracer.iter[: codi.num_latents + 2]:
                out = codi.transformer.h[1].output
                if at is not None and step == at:
                    out[:, -1] += 50.0
                h.append(codi.transformer.h[2].output[:, -1].clone())
        hidden[at] = torch.stack(list(h))
    assert torch.equal(hidden["latent3"], hidden[3])
    assert not torch.equal(hidden["latent3"][3], hidden[None][3])  # the edit landed at step 3 (layer 2 sees it)
    assert torch.equal(hidden["latent3"][:3], hidden[None][:3])  # and not before
    assert plain.shape[0] == 1


@pytest.mark.parametrize("prompts", ["Tom has 3 apples", ["Tom has 3 apples"]])
def test_text_prompts_say_call_codi_encode(codi, prompts):
    with pytest.raises(TypeError, match=r"latent_generate takes token ids, not a (string|list): call "
                                        r"codi.latent_generate\(codi.encode\(questions\)\)"):
        codi.latent_generate(prompts, max_new_tokens=2)
    with pytest.raises(TypeError, match="call codi.latent_generate"):
        with codi.latent_generate(prompts, max_new_tokens=2):
            pass


def test_saved_values_carry_no_autograd_history_unless_asked(codi):
    for grad in (False, True):
        with codi.latent_generate(codi.encode(QUESTIONS), max_new_tokens=2, grad=grad) as tracer:
            saved = nnsight.save([])
            for step in tracer.iter[:3]:
                saved.append(codi.step_input.output)  # in the order the model runs them
                saved.append(codi.transformer.h[1].output[:, -1].clone())
        assert len(saved) == 6 and all(t.requires_grad == grad for t in saved), grad
        assert all((t.grad_fn is not None) == grad for t in saved), grad
