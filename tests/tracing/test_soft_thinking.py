"""Soft Thinking on the shipped tiny instruct LM: the soft input, the cold stop, k=1 = greedy token feeding,
batched = one at a time; each against an independent computation on the plain HF model."""

from __future__ import annotations

import pytest
import torch

from nnsight_codi.loading import load_model, load_soft_thinking
from nnsight_codi.models.soft_thinking import SoftThinking
from nnsight_codi.tracing.loop import run_loop

QUESTIONS = ["Tom has 3 pens . He gets 4 more . How many pens does Tom have now ?",
             "Ann has 5 cats . She loses 2 . How many cats ?",
             "A box has 12 eggs . 4 break . Then 3 more break . How many are left ?"]
K = 6


@pytest.fixture(scope="module")
def plain():
    return load_model("tiny-instruct")


def _hand_entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits.double(), -1)
    return -(p * torch.log(p.clamp_min(1e-300))).sum(-1)


class Record:
    """Each step's input embeddings and last logits."""

    def __init__(self, last: int) -> None:
        self.last = last

    def sites(self, step):
        return ["input", "output"] if step <= self.last else []

    def visit(self, site, value, step, sink):
        if site == "input":
            sink.append(("input", step, value[:, -1].clone()))
        else:
            sink.append(("logits", step, value.logits[:, -1].clone()))


@pytest.mark.parametrize("top_k,temperature", [(5, 1.0), (3, 0.7)])
def test_soft_input_is_the_weighted_top_k_embedding_mix(top_k, temperature):
    model = load_soft_thinking("tiny-instruct", num_latents=K, top_k=top_k, temperature=temperature)
    _, records = run_loop(model, model.encode(QUESTIONS), [Record(K)], num_latents=K, max_new_tokens=4)
    inputs = {s: t for n, s, t in records if n == "input"}
    logits = {s: t for n, s, t in records if n == "logits"}
    emb = model._module.get_input_embeddings().weight.detach()
    for step in range(1, K + 1):
        expected = torch.zeros_like(inputs[step])
        for row in range(len(QUESTIONS)):
            values, ids = torch.sort(logits[step - 1][row].double(), descending=True)
            top, tid = values[:top_k] / temperature, ids[:top_k]
            w = torch.exp(top - top.max())
            w = w / w.sum()
            for j in range(top_k):
                expected[row] += (w[j] * emb[tid[j]].double()).float()
        torch.testing.assert_close(inputs[step], expected, atol=1e-5, rtol=1e-5)


def _greedy_reference(lm, prompt: list[int], k: int, eot: int, eos: int, max_new: int) -> list[int]:
    """Plain HF model, input ids only, full recompute: K greedy tokens, then eot, then a greedy answer."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(k):
            ids.append(int(lm(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        ids.append(eot)
        answer = []
        for _ in range(max_new):
            nxt = int(lm(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            answer.append(nxt)
            if nxt == eos:
                break
            ids.append(nxt)
    return answer


def test_top_k_one_without_cold_stop_is_greedy_token_feeding(plain):
    model = load_soft_thinking("tiny-instruct", num_latents=K, top_k=1)
    cfg = model.codi_config
    for q in QUESTIONS:
        got = model.latent_generate(model.encode([q]), max_new_tokens=24)[0].tolist()
        want = _greedy_reference(plain._module, model.prompt_ids(q), K, cfg.eot_id, cfg.eos_id, 24)
        assert got[: len(want)] == want


def _row_latents(model, questions, k=K):
    snap = model.latent_generate(model.encode(questions), num_latents=k, stop_at=k + 1)
    rows = snap.state.row_latents
    return [k] * len(questions) if rows is None else rows.tolist()


def test_cold_stop_counts_consecutive_cold_steps():
    threshold, patience = 0.02, 2
    model = load_soft_thinking("tiny-instruct", num_latents=K, top_k=5, cold_entropy=threshold, cold_patience=patience)
    free = load_soft_thinking("tiny-instruct", num_latents=K, top_k=5)  # the same run without a stop
    _, records = run_loop(free, free.encode(QUESTIONS), [Record(K)], num_latents=K, max_new_tokens=2)
    logits = {s: t for n, s, t in records if n == "logits"}
    expected = []
    for row in range(len(QUESTIONS)):
        count, stop = 0, K
        for step in range(K):  # the logits that make latent step+1
            count = count + 1 if float(_hand_entropy(logits[step][row])) < threshold else 0
            if count >= patience:
                stop = step
                break
        expected.append(stop)
    got = _row_latents(model, QUESTIONS)
    assert got == expected
    assert len(set(got)) > 1  # the rows stop at different steps: the test can tell them apart


def test_batched_with_cold_stop_equals_one_at_a_time_and_a_fixed_k():
    model = load_soft_thinking("tiny-instruct", num_latents=K, top_k=5, cold_entropy=0.02, cold_patience=2)
    batched = model.answer(QUESTIONS, max_new_tokens=24)
    stops = _row_latents(model, QUESTIONS)
    for i, q in enumerate(QUESTIONS):
        assert model.answer([q], max_new_tokens=24) == [batched[i]]
        # a cold-stopped row answers as a run that took exactly its latents with no stop rule
        fixed = load_soft_thinking("tiny-instruct", num_latents=stops[i], top_k=5)
        assert fixed.answer([q], max_new_tokens=24) == [batched[i]]


def test_conditions_and_errors():
    model = load_soft_thinking("tiny-instruct", num_latents=2, top_k=2)
    assert model.encode(["q ?"]).feedback is model.soft
    assert model.encode(["q ?"], feedback="pause").feedback.kind == "constant"
    with pytest.raises(ValueError, match="cold_patience"):
        SoftThinking(top_k=2, cold_entropy=0.1, cold_patience=0)
    with pytest.raises(ValueError, match="markers"):
        load_soft_thinking("tiny-instruct", markers=("<nope>", "<eot>"))
    with pytest.raises(ValueError, match="CODI-family"):
        load_soft_thinking("tiny")


@pytest.mark.parametrize("cold_entropy", [None, 0.02])
def test_session_executor_equals_direct(cold_entropy):
    """`remote="local"` (the session executor NDIF runs) mixes the served model's embeddings and applies the
    cold stop exactly as the direct executor does."""
    model = load_soft_thinking("tiny-instruct", num_latents=K, top_k=5, cold_entropy=cold_entropy, cold_patience=2)
    direct, _ = run_loop(model, model.encode(QUESTIONS), [], num_latents=K, max_new_tokens=8)
    session, _ = run_loop(model, model.encode(QUESTIONS), [], num_latents=K, max_new_tokens=8, remote="local")
    assert torch.equal(direct, session)
    if cold_entropy is not None:  # the stop changed some row's answer, so equality checks the stop too
        free = load_soft_thinking("tiny-instruct", num_latents=K, top_k=5)
        unstopped, _ = run_loop(free, free.encode(QUESTIONS), [], num_latents=K, max_new_tokens=8)
        assert not torch.equal(unstopped, session)
