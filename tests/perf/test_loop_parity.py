"""The optimised latent loop gives exactly the answers and activations of the pre-#13 loop (oracle.py),
on every executor: plain call, traced driver with hooks, NDIF-shaped session."""

from __future__ import annotations

import nnsight
import pytest
import torch
from factories import make_converted
from oracle import as_oracle

from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.capture_hook import Capture
from nnsight_codi.tracing.loop import run_loop
from nnsight_codi.tracing.session import plain_lm_model, run_latent_session


@pytest.fixture(scope="module", params=["tiny", "llama"])
def codi(request, tmp_path_factory):
    if request.param == "tiny":
        return load_model("tiny")
    return load_model(make_converted(tmp_path_factory.mktemp("llama"), "llama", num_latents=3))


@pytest.fixture(scope="module")
def prompts(codi):
    opts = synthetic_options(codi, None) if codi.codi_config.extra.get("synthetic_options") else {}
    questions = list(load_eval_dataset("synthetic", limit=24, seed=5, **opts)["question"])
    return codi.encode(questions)


@pytest.mark.parametrize("masking", ["exact", "reference"])
@pytest.mark.parametrize("num_latents", [None, 0])
def test_plain_call_answers_equal_oracle(codi, prompts, masking, num_latents):
    with torch.inference_mode():
        new = codi.latent_generate(prompts, num_latents=num_latents, max_new_tokens=12, masking=masking)
        with as_oracle(codi):
            old = codi.latent_generate(prompts, num_latents=num_latents, max_new_tokens=12, masking=masking)
    assert new.shape[1] >= 1
    assert torch.equal(new, old)


@pytest.mark.parametrize("sync_every", [2, 5, 64])
def test_fewer_host_syncs_give_the_same_answer_ids(codi, prompts, sync_every):
    with torch.inference_mode():
        every = codi.latent_generate(prompts, max_new_tokens=12)
        state = codi.new_loop_state(prompts, max_new_tokens=12, sync_every=sync_every)
        assert state.sync_every == sync_every
        original = codi.new_loop_state
        try:  # force the lazy check on this CPU model
            object.__setattr__(codi, "new_loop_state",
                               lambda *a, **k: original(*a, **{**k, "sync_every": sync_every}))
            lazy = codi.latent_generate(prompts, max_new_tokens=12)
        finally:
            object.__delattr__(codi, "new_loop_state")
    assert torch.equal(every, lazy)


def test_traced_capture_equals_oracle(codi, prompts):
    """Every captured value (all layers, latent inputs, attention, KV) and the answers are bit-identical."""
    hook = Capture(["hidden", "latent_input", "attention", "kv"], range(codi.num_layers + 1), codi.num_latents)
    with torch.inference_mode(), codi.eager_attention():
        new_tokens, new = run_loop(codi, prompts, [hook], max_new_tokens=8, output_attentions=True)
        with as_oracle(codi):
            old_tokens, old = run_loop(codi, prompts, [hook], max_new_tokens=8, output_attentions=True)
    assert torch.equal(new_tokens, old_tokens)
    assert [(n, s) for n, s, _ in new] == [(n, s) for n, s, _ in old]
    assert {n for n, _, _ in new} >= {"hidden/0", f"hidden/{codi.num_layers}", "latent_input", "attention", "kv"}
    for (name, step, a), (_, _, b) in zip(new, old):
        assert torch.equal(a, b), (name, step)


def test_session_equals_oracle(codi, prompts):
    """The one check that the session (one trace per LM call: the NDIF shape), serialised or not, answers and
    captures as the driver does."""
    hook = Capture(["hidden", "latent_input"], range(codi.num_layers + 1), codi.num_latents)
    with torch.inference_mode():
        tokens, records = run_loop(codi, prompts, [hook], max_new_tokens=8, remote="local")
        unserialised, none = run_latent_session(plain_lm_model(codi), codi.prj._module, codi.codi_config, prompts,
                                                max_new_tokens=8)
        with as_oracle(codi):
            old_tokens, old = run_loop(codi, prompts, [hook], max_new_tokens=8)
    assert torch.equal(tokens, old_tokens) and torch.equal(unserialised, old_tokens) and none == []
    assert len(records) == len(old)
    for (name, step, a), (_, _, b) in zip(records, old):
        assert torch.equal(a, b), (name, step)


def test_lean_calls_ask_only_for_the_last_logits(codi, prompts):
    """The driver no longer materialises full-sequence logits or per-layer hidden states; full_outputs=True does."""
    with torch.inference_mode():
        with codi.latent_generate(prompts, max_new_tokens=2) as tracer:
            for step in tracer.iter[:1]:
                lean_logits = nnsight.save(codi.output.logits.shape)
                lean_hidden = nnsight.save(codi.output.hidden_states is None)
        with codi.latent_generate(prompts, max_new_tokens=2, full_outputs=True) as tracer:
            for step in tracer.iter[:1]:
                full_logits = nnsight.save(codi.output.logits.shape)
    assert lean_hidden
    assert tuple(lean_logits) == (prompts.input_ids.shape[0], 1, codi._module.config.vocab_size)
    assert tuple(full_logits) == (*prompts.input_ids.shape, codi._module.config.vocab_size)
