"""CoT vectors: extraction against an independent computation, the injection schedules, the KV
cache, c = 0, remote="local", the resumable grid and the bad-input checks."""

from __future__ import annotations

import json

import cot_testlib as lib
import numpy as np
import pytest
import torch

from nnsight_codi.cot import (
    ExtractConfig,
    Steering,
    evaluate_condition,
    extract_vectors,
    load_questions,
    load_vectors,
    parse_condition,
    recompute_vectors,
    run_grid,
)
from nnsight_codi.cot.generation import generate_ids, position_means
from nnsight_codi.cot.prompts import prompt_ids
from nnsight_codi.cot.vector_estimation import stored_ids
from nnsight_codi.tracing.remote import NdifError, check_remote, ndif_errors


@pytest.fixture(scope="module")
def model():
    return lib.chat_lm()


@pytest.fixture(scope="module")
def store(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("cot") / "vectors.zarr"
    cfg = ExtractConfig(model="test", limit=5, batch_size=3, max_new_tokens=6, greedy=False, sample_seed=3)
    summary = extract_vectors(path, cfg, model=model, progress=False)
    assert summary["complete"] and summary["written_now"] == 5
    return path, cfg


def test_vector_equals_independent_computation_from_stored_ids(model, store):
    path, cfg = store
    ids = stored_ids(path)
    diffs = [lib.hand_means(model._module, ids["cot"]["prompt"][i], ids["cot"]["generated"][i])
             - lib.hand_means(model._module, ids["direct"]["prompt"][i], ids["direct"]["generated"][i])
             for i in range(5)]
    expected = torch.stack(diffs).mean(0).numpy()
    assert np.allclose(load_vectors(path), expected, atol=1e-5)
    assert np.allclose(recompute_vectors(path, model, batch_size=2), expected, atol=1e-5)
    # the stored prompts are the chat-template prompts of the questions
    qs = load_questions("synthetic", "train", 5)
    assert ids["direct"]["prompt"][0] == prompt_ids(model.tokenizer, qs["question"][0], "direct")
    assert np.linalg.norm(expected[1:], axis=-1).min() > 0  # the two prompts differ at every block


def test_last_prompt_vector_equals_independent_computation(model, tmp_path):
    """The contrastive read at the last prompt token (batched, left-padded prompts of unequal length)."""
    path = tmp_path / "last.zarr"
    cfg = ExtractConfig(model="test", limit=5, batch_size=3, max_new_tokens=4, greedy=True, positions="last_prompt")
    extract_vectors(path, cfg, model=model, progress=False)
    ids = stored_ids(path)
    assert len({len(p) for p in ids["direct"]["prompt"]}) > 1  # padding is exercised
    diffs = [lib.hand_means(model._module, ids["cot"]["prompt"][i], ids["cot"]["generated"][i], "last_prompt")
             - lib.hand_means(model._module, ids["direct"]["prompt"][i], ids["direct"]["generated"][i], "last_prompt")
             for i in range(5)]
    expected = torch.stack(diffs).mean(0).numpy()
    assert np.allclose(load_vectors(path), expected, atol=1e-5)
    assert not np.allclose(recompute_vectors(path, model, positions="generated"), expected, atol=1e-3)


def test_extraction_resumes_and_sampling_is_seeded(model, store, tmp_path):
    path, cfg = store
    assert extract_vectors(path, cfg, model=model, progress=False)["written_now"] == 0  # finished: reused
    again = tmp_path / "again.zarr"
    extract_vectors(again, cfg, model=model, progress=False)
    assert stored_ids(again) == stored_ids(path)  # same seed, same samples
    greedy = ExtractConfig(model="test", limit=5, batch_size=3, max_new_tokens=6, greedy=True)
    other = tmp_path / "greedy.zarr"
    with pytest.raises(Exception, match="created with another configuration \(greedy False -> True"):
        extract_vectors(path, greedy, model=model, progress=False)
    extract_vectors(other, greedy, model=model, progress=False)
    assert stored_ids(other) != stored_ids(path)


def _prompts(model, n=3, mode="direct"):
    qs = load_questions("synthetic", "dev", n)["question"]
    return [prompt_ids(model.tokenizer, q, mode) for q in qs]


@pytest.mark.parametrize("schedule", ["single", "continuous"])
def test_schedules_edit_the_right_forwards(model, schedule):
    prompts = _prompts(model)
    v = torch.randn(32, generator=torch.Generator().manual_seed(1))
    gens, records = generate_ids(model, prompts, [Steering(v, 1, 4.0, schedule)], max_new_tokens=5)
    steered_steps = [step for name, step, _ in records if name == "steered"]
    assert steered_steps == ([0] if schedule == "single" else [0, 1, 2, 3, 4])
    # independent: a torch forward hook adding c·v on the first forward only (single) or on every one
    for p, g in zip(prompts, gens):
        handle, calls = lib.block_hook_add(model._module, 1, 4.0 * v, first_only=schedule == "single")
        try:
            hand = lib.hand_generate(model._module, p, 5)
        finally:
            handle.remove()
        assert len(calls) == 5 and hand == g
    plain, _ = generate_ids(model, prompts, max_new_tokens=5)
    assert plain != gens  # the edit changes what is generated


def test_continuous_with_cache_equals_recomputation_without(model):
    prompts = _prompts(model)
    v = torch.randn(32, generator=torch.Generator().manual_seed(2))
    gens, _ = generate_ids(model, prompts, [Steering(v, 2, 3.0, "continuous")], max_new_tokens=6)
    handle, _ = lib.block_hook_add(model._module, 2, 3.0 * v)
    try:
        nocache = [lib.hand_generate(model._module, p, 6, cache=False) for p in prompts]
    finally:
        handle.remove()
    assert nocache == gens


def test_coefficient_zero_equals_no_steering_and_batched_equals_single(model):
    prompts = _prompts(model, 4)
    v = torch.randn(32)
    plain, _ = generate_ids(model, prompts, max_new_tokens=6)
    for schedule in ("single", "continuous"):
        assert generate_ids(model, prompts, [Steering(v, 1, 0.0, schedule)], max_new_tokens=6)[0] == plain
    assert [generate_ids(model, [p], max_new_tokens=6)[0][0] for p in prompts] == plain
    means = position_means(model, prompts, plain)
    one = torch.cat([position_means(model, [p], [g]) for p, g in zip(prompts, plain)])
    assert torch.allclose(means, one, atol=1e-5)


def test_remote_local_equals_local(model, store):
    prompts = _prompts(model, 2)
    v = torch.as_tensor(load_vectors(store[0]))[1]
    hook = [Steering(v, 1, 2.0, "continuous")]
    local = generate_ids(model, prompts, hook, max_new_tokens=4)
    remote = generate_ids(model, prompts, hook, max_new_tokens=4, remote="local")
    assert remote[0] == local[0] and [r[:2] for r in remote[1]] == [r[:2] for r in local[1]]
    assert torch.allclose(position_means(model, prompts, local[0], remote="local"),
                          position_means(model, prompts, local[0]), atol=1e-6)


def test_evaluation_and_resumable_grid(model, store, tmp_path):
    vectors = load_vectors(store[0])
    dev = load_questions("synthetic", "dev", 3)
    res = evaluate_condition(model, dev, parse_condition("continuous:1:2"), vectors, max_new_tokens=4, progress=False)
    s = res.summary()
    assert s["n"] == 3 and 0 <= s["accuracy"] <= 1 and s["ci_low"] <= s["accuracy"] <= s["ci_high"]
    grid = tmp_path / "grid.jsonl"
    kwargs = dict(schedules=["single", "continuous"], layers=[1, 2], coefs=[1.0], fingerprint={"k": 1},
                  max_new_tokens=4, progress=False)
    rows = run_grid(model, dev, vectors, grid, **kwargs)
    assert len(rows) == 4
    lines = grid.read_text().splitlines()
    grid.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # killed: 2 cells done, one torn line
    again = run_grid(model, dev, vectors, grid, **kwargs)
    assert [json.loads(x)["accuracy"] for x in grid.read_text().splitlines()[1:3]] == [r["accuracy"] for r in rows[:2]]
    assert sorted((r["schedule"], r["layer"]) for r in again) == sorted((r["schedule"], r["layer"]) for r in rows)
    assert sum(1 for x in grid.read_text().splitlines() if x.startswith('{"schedule"')) == 4
    with pytest.raises(ValueError, match="other settings"):
        run_grid(model, dev, vectors, grid, **{**kwargs, "fingerprint": {"k": 2}})


def test_bad_inputs_fail_before_work(model, store):
    vectors = load_vectors(store[0])
    dev = load_questions("synthetic", "dev", 2)
    wide = lib.chat_lm(dim=48)
    with pytest.raises(ValueError, match="another model"):
        evaluate_condition(wide, dev, parse_condition("single:1:2"), vectors, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        evaluate_condition(model, dev, parse_condition("continuous:7:2"), vectors, progress=False)
    with pytest.raises(ValueError, match="unknown schedule"):
        parse_condition("sideways:1:2")
    with pytest.raises(ValueError, match="unknown schedule"):
        run_grid(model, dev, vectors, "unused.jsonl", schedules=["sideways"], layers=[1], coefs=[1.0])
    with pytest.raises(ValueError, match="out of range"):
        run_grid(model, dev, vectors, "unused.jsonl", layers=[1, 9], coefs=[1.0])
    plain = lib.chat_lm(chat=False)
    with pytest.raises(ValueError, match="no chat template"):
        evaluate_condition(plain, dev, parse_condition("direct"), progress=False)
    with pytest.raises(ValueError, match="no chat template"):
        extract_vectors("unused.zarr", ExtractConfig(model="x", limit=2), model=plain, progress=False)


def test_ndif_failures_say_what_to_do(monkeypatch):
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    from nnsight import CONFIG

    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(ValueError, match="NDIF_API_KEY"):
        check_remote(True)
    monkeypatch.setenv("NDIF_API_KEY", "k")
    assert check_remote(True) is True
    with pytest.raises(NdifError, match="does not host"):
        with ndif_errors(True, "org/model"):
            raise RuntimeError("org/model is not dedicated and hotswapping is not supported for this API key")
    with pytest.raises(NdifError, match="timed out.*resume"):
        with ndif_errors(True):
            raise TimeoutError("read timed out")
    with pytest.raises(NdifError, match="version"):
        with ndif_errors(True):
            raise RuntimeError("client version 0.7 is not supported by server version 0.8")
    with pytest.raises(KeyError):  # local runs are not rewritten
        with ndif_errors("local"):
            raise KeyError("x")
