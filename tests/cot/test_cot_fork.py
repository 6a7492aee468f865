"""The forked CoT-vector grid (#25): `single` and `continuous` at one (layer, coef) share the steered
prompt forward and first token; every branch's answers equal a whole run's bit for bit, and no
branch's work reaches a sibling through the shared KV cache."""

from __future__ import annotations

import json

import cot_testlib as lib
import pytest
import torch

from nnsight_codi.cot import Condition, Steering, evaluate_conditions, load_questions, run_grid
from nnsight_codi.cot.generation import generate_forked, generate_ids, prompt_cache
from nnsight_codi.cot.prompts import prompt_ids
from nnsight_codi.models.model_sources import TINY_INSTRUCT_DIR

TINY = pytest.param("tiny-instruct", marks=pytest.mark.skipif(not (TINY_INSTRUCT_DIR / "config.json").is_file(),
                                                              reason="the tiny instruct model is not installed"))


@pytest.fixture(scope="module", params=["random-gpt2", TINY])
def model(request):
    if request.param == "random-gpt2":
        return lib.chat_lm()
    from nnsight_codi.loading import load_model

    return load_model("tiny-instruct")


def _vectors(model, seed=0):
    cfg = model._module.config
    return torch.randn(cfg.n_layer + 1, cfg.n_embd, generator=torch.Generator().manual_seed(seed))


def _prompts(model, n=7):
    qs = load_questions("synthetic", "dev", n)
    prompts = [prompt_ids(model.tokenizer, q, "direct") for q in qs["question"]]
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    return prompts


@pytest.mark.parametrize("max_new_tokens", [1, 2, 12])
def test_forked_generation_equals_whole_runs(model, max_new_tokens):
    """Token ids of every branch (batched, unequal prompt lengths) and the continuous branch's records."""
    v = _vectors(model)
    prompts = _prompts(model)
    layer = model._module.config.n_layer // 2 + 1
    sets = [[Steering(v[layer], layer, 3.0, "single")], [Steering(v[layer], layer, 3.0, "continuous")]]
    forked = generate_forked(model, prompts, sets, max_new_tokens)
    whole = [generate_ids(model, prompts, s, max_new_tokens=max_new_tokens) for s in sets]
    for (ids_f, rec_f), (ids_w, rec_w) in zip(forked, whole):
        assert ids_f == ids_w
    assert forked[0][1] == whole[0][1]
    assert forked[1][1] == [r for r in whole[1][1] if r[1] >= 1]  # the continuation's records: steps 1.. as whole
    if max_new_tokens > 2:  # not vacuous: the schedules differ, and steering changes the tokens
        plain = generate_ids(model, prompts, [], max_new_tokens=max_new_tokens)[0]
        assert whole[1][0] not in (plain, whole[0][0])
        assert {r[1] for r in whole[0][1]} == {0} and {r[1] for r in whole[1][1]} > {0}  # prompt only; every step
        if "tiny-instruct" not in str(model._module.config.name_or_path):
            # (the shipped tiny-instruct keeps its greedy tokens under a random single push, as its
            # CoT study's random-direction control shows; the random GPT-2 does not)
            assert whole[0][0] != plain


def test_forked_grid_equals_unforked(model, tmp_path):
    """Grid rows and file bytes, and every condition's texts, forked vs whole, batched (3 per batch)."""
    v = _vectors(model, seed=1)
    dev = load_questions("synthetic", "dev", 7)
    layers = [1, model._module.config.n_layer]
    kwargs = dict(schedules=["single", "continuous"], layers=layers, coefs=[0.5, 4.0], fingerprint={"k": 1},
                  max_new_tokens=10, batch_size=3, progress=False)
    forked = run_grid(model, dev, v, tmp_path / "forked.jsonl", fork=True, **kwargs)
    whole = run_grid(model, dev, v, tmp_path / "whole.jsonl", fork=False, **kwargs)
    assert forked == whole
    assert (tmp_path / "forked.jsonl").read_text() == (tmp_path / "whole.jsonl").read_text()  # cell order kept
    conds = [Condition(s, l, c) for l in layers for c in (0.5, 4.0) for s in ("single", "continuous")]
    a = evaluate_conditions(model, dev, conds, v, max_new_tokens=10, batch_size=3, progress=False, fork=True)
    b = evaluate_conditions(model, dev, conds, v, max_new_tokens=10, batch_size=3, progress=False, fork=False)
    assert [r.texts for r in a] == [r.texts for r in b] and [r.lengths for r in a] == [r.lengths for r in b]


def test_killed_forked_grid_resumes_to_the_same_file(tmp_path):
    """A kill while a sibling's row waits in memory: the rerun recomputes it, and the file equals a clean run."""
    model = lib.chat_lm()
    v = _vectors(model, seed=2)
    dev = load_questions("synthetic", "dev", 4)
    kwargs = dict(schedules=["single", "continuous"], layers=[1, 2], coefs=[2.0], fingerprint={"k": 1},
                  max_new_tokens=6, batch_size=3, progress=False)
    clean = run_grid(model, dev, v, tmp_path / "clean.jsonl", **kwargs)
    grid = tmp_path / "grid.jsonl"
    lines = (tmp_path / "clean.jsonl").read_text().splitlines()
    grid.write_text("\n".join(lines[:2]) + "\n")  # header + (single, 1): (continuous, 1) was waiting
    again = run_grid(model, dev, v, grid, **kwargs)
    assert again == clean and grid.read_text() == (tmp_path / "clean.jsonl").read_text()
    assert [json.loads(x)["schedule"] for x in lines[1:]] == ["single", "single", "continuous", "continuous"]


def _branch_then_sibling(model, prompts, sets, steps=8):
    """Run sets[0] whole, continue sets[1] from its cut cache and edit that branch's cache in place, then
    continue sets[2]: `(source cache untouched, sibling's ids)`."""
    from nnsight_codi.cot.generation import _generate, truncate_at_stop
    from nnsight_codi.tracing.plain_lm import PlainLM

    lm = PlainLM.of(model)
    ids, mask = lm.pad(prompts)
    first, _, cache = _generate(lm, ids, mask, sets[0], steps, True, None, return_cache=True)
    before = [(layer.keys, layer.values, layer.keys.clone()) for layer in cache.layers]
    ids1, mask1 = torch.cat([ids, first[:, :1]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    branch = prompt_cache(cache, ids.shape[1])
    _generate(lm, ids1, mask1, sets[1], steps - 1, True, None, cache=branch, step_offset=1)
    for layer in branch.layers:  # the branch edits its own cache in place after its calls
        layer.keys.add_(100.0)
        layer.values.add_(100.0)
    intact = all(layer.keys is k and layer.values is v and torch.equal(layer.keys, copy)
                 for layer, (k, v, copy) in zip(cache.layers, before))
    new, _, _ = _generate(lm, ids1, mask1, sets[2], steps - 1, True, None, cache=prompt_cache(cache, ids.shape[1]),
                          step_offset=1)
    return intact, truncate_at_stop(torch.cat([first[:, :1], new], 1).tolist(), lm.stop_ids)


def test_a_branch_never_leaks_into_a_sibling(monkeypatch):
    """single whole, continuous (large coef) as a branch that then edits its cache in place, single again as a
    sibling: the source cache is untouched and the sibling equals a whole single run. With the cache shared
    by reference (no fork) the source is changed and the sibling's answers with it."""
    model = lib.chat_lm()
    v = _vectors(model, seed=3)
    prompts = _prompts(model)
    sets = [[Steering(v[1], 1, 2.0, s)] for s in ("single", "continuous", "single")]
    single = generate_ids(model, prompts, sets[0], max_new_tokens=8)[0]
    assert generate_ids(model, prompts, sets[1], max_new_tokens=8)[0] != single
    assert _branch_then_sibling(model, prompts, sets) == (True, single)
    import nnsight_codi.cot.generation as generation

    monkeypatch.setattr(generation, "fork_cache", lambda cache: cache)  # the cache shared by reference
    intact, sibling = _branch_then_sibling(model, prompts, sets)
    assert not intact and sibling != single


def test_prompt_cache_is_cut_and_independent():
    """The branch's cache is the source's first positions; its updates and in-place edits after a call stay its own."""
    from transformers import DynamicCache

    cache = DynamicCache()
    k, val = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    cache.update(k, val, 0)
    branch = prompt_cache(cache, 3)
    assert branch.layers[0].keys.shape[-2] == 3 and torch.equal(branch.layers[0].keys, k[..., :3, :])
    keys, _ = branch.update(torch.randn(2, 4, 1, 8), torch.randn(2, 4, 1, 8), 0)
    keys.add_(1.0)  # an in-place edit of the branch's cache after its call
    assert torch.equal(cache.layers[0].keys, k) and cache.layers[0].keys.shape[-2] == 5
    with pytest.raises(ValueError, match="fewer than the prompt"):
        prompt_cache(cache, 6)


def test_sampled_grid_runs_cell_by_cell(tmp_path, monkeypatch):
    """Sampling draws from the RNG per generation: nothing is shared (no fork), and rows equal fork=False."""
    import nnsight_codi.cot.cot_accuracy as cot_accuracy

    model = lib.chat_lm()
    v = _vectors(model, seed=4)
    dev = load_questions("synthetic", "dev", 3)
    kwargs = dict(schedules=["single", "continuous"], layers=[1], coefs=[2.0], max_new_tokens=4, progress=False,
                  greedy=False, seed=5)
    whole = run_grid(model, dev, v, tmp_path / "whole.jsonl", fork=False, **kwargs)
    monkeypatch.setattr(cot_accuracy, "generate_forked", None)  # would fail if called
    assert run_grid(model, dev, v, tmp_path / "forked.jsonl", fork=True, **kwargs) == whole
