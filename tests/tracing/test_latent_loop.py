"""The latent loop: batched == one-at-a-time, K=0, the step convention, and in-trace edits (session ==
driver, serialised or not, is tests/perf/test_loop_parity.py's `test_session_equals_oracle`)."""

from __future__ import annotations

import nnsight
import pytest
import torch
from factories import make_converted

from nnsight_codi.loading import load_model
from nnsight_codi.models.kv_cache import cache_kwargs, output_cache
from nnsight_codi.tracing.loop import step_name, step_names
from nnsight_codi.tracing.session import plain_lm_model, run_latent_session

QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "how many pens ?",
             "he loses 2 pens .", "tom has 12 pens . he loses 5 pens . he gets 9 more . how many ?"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def codi(request, tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp(request.param), request.param, num_latents=3))


def test_step_names():
    assert step_names(2) == ["bot", "latent1", "latent2", "eot"]
    assert [step_name(i, 2) for i in (0, 2, 3, 4, 5)] == ["bot", "latent2", "eot", "answer1", "answer2"]


def test_batched_equals_one_at_a_time(codi):
    batched = codi.latent_generate(codi.encode(QUESTIONS), max_new_tokens=6)
    for row, question in enumerate(QUESTIONS):
        single = codi.latent_generate(codi.encode([question]), max_new_tokens=6)
        assert batched[row, : single.shape[1]].tolist() == single[0].tolist()


def test_reference_masking_differs_only_when_padded(codi):
    one = codi.encode(QUESTIONS[:1])
    exact = codi.latent_generate(one, max_new_tokens=6, masking="exact")
    reference = codi.latent_generate(one, max_new_tokens=6, masking="reference")
    assert exact.tolist() == reference.tolist()  # batch size 1: nothing to mask


def test_hidden_states_batched_equal_single_in_trace(codi):
    def trace_hidden(questions):
        with codi.latent_generate(codi.encode(questions), max_new_tokens=3) as tracer:
            hs = nnsight.save([])
            for step in tracer.iter[:5]:  # bot, latent1..3, eot
                hs.append(codi.step_input.output[:, -1].clone())
        return torch.stack(hs, 1)

    batched = trace_hidden(QUESTIONS)
    for row, question in enumerate(QUESTIONS):
        # float32 batched vs single matmuls differ by ~1e-6; three latent iterations amplify it.
        torch.testing.assert_close(batched[row], trace_hidden([question])[0], atol=1e-4, rtol=1e-4)


def test_session_step_fn_sees_and_edits_hidden_states(codi):
    prompts = codi.encode(QUESTIONS[:2])
    lm = plain_lm_model(codi)
    blocks = "transformer.h" if hasattr(codi._module, "transformer") else "model.layers"

    def layer(model, i):
        envoy = model
        for part in blocks.split("."):
            envoy = getattr(envoy, part)
        return envoy[i]

    def read(model, step, sink):
        sink.append(layer(model, 0).output[:, -1].clone())

    _, seen = run_latent_session(lm, codi.prj._module, codi.codi_config, prompts, max_new_tokens=2,
                                 remote="local", step_fn=read)
    with codi.latent_generate(prompts, max_new_tokens=2) as tracer:
        traced = nnsight.save([])
        for step in tracer.iter[:6]:
            traced.append(layer(codi, 0).output[:, -1].clone())
    assert len(seen) == len(traced) == 6
    for a, b in zip(seen, traced):
        torch.testing.assert_close(a, b)


def test_zero_latents_is_bot_then_eot(codi):
    prompts = codi.encode(QUESTIONS[:1])
    lm = codi._module
    with torch.no_grad():  # by hand: prompt call, then eot, then greedy tokens
        out = lm(input_ids=prompts.input_ids, use_cache=True)
        cache, token, expected = output_cache(out), torch.tensor([[codi.codi_config.eot_id]]), []
        for _ in range(4):
            out = lm(input_ids=token, **cache_kwargs(cache), use_cache=True)
            cache = output_cache(out)
            logits = out.logits[:, -1].clone()
            logits[:, codi.codi_config.eot_id] = -float("inf")
            token = logits.argmax(-1, keepdim=True)
            expected.append(int(token))
    ours = codi.latent_generate(prompts, num_latents=0, max_new_tokens=4)[0].tolist()
    eos = codi.codi_config.eos_id
    cut = expected.index(eos) + 1 if eos in expected else len(expected)
    assert ours[:cut] == expected[:cut]


def test_steering_with_coefficient_zero_is_a_no_op_and_nonzero_changes_the_run(codi):
    prompts = codi.encode(QUESTIONS[:2])
    direction = torch.randn(codi.hidden_size)

    def run(coefficient):
        with codi.latent_generate(prompts, max_new_tokens=4) as tracer:
            finals = nnsight.save([])
            for step in tracer.iter[:5]:
                z = codi.step_input.output
                if step == 2:
                    z[:, -1] += coefficient * direction
                finals.append(codi.output.logits[:, -1].clone())
        return torch.stack(finals)

    base = codi.latent_generate(prompts, max_new_tokens=4)
    assert torch.equal(run(0.0), run(0.0))
    unsteered = run(0.0)
    steered = run(50.0)
    torch.testing.assert_close(steered[:2], unsteered[:2])  # bot and latent1 come before the edit
    assert not torch.allclose(steered[2:], unsteered[2:])
    assert codi.latent_generate(prompts, max_new_tokens=4).tolist() == base.tolist()  # edits do not persist


def test_bad_loop_arguments(codi):
    prompts = codi.encode(QUESTIONS[:1])
    with pytest.raises(ValueError, match="num_latents"):
        codi.latent_generate(prompts, num_latents=-1)
    with pytest.raises(ValueError, match="masking"):
        codi.latent_generate(prompts, masking="none")


def test_real_ndif_run_needs_a_deployed_repo_id(codi):
    from nnsight_codi.tracing.loop import run_loop

    with pytest.raises(ValueError, match="ndif_repo_id"):
        run_loop(codi, codi.encode(QUESTIONS[:1]), remote=True)
