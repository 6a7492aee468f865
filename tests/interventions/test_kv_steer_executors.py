"""KV steering (and the hidden edits) give the same run on both executors and in independent plain loops.

A large KV edit (coefficient 4 on random key and value directions, every block, the K latent entries)
must give the same answer ids *and* the same captured (edited) cache through the traced driver
(`remote=None`), the NDIF-shaped session (`remote="local"`) and a plain-PyTorch loop that shares no
code with the package, for both maskings, batched with left padding:

- `masking="exact"`: the oracle is the batch-1 loop on the HF module (exact masking = each example
  alone, unpadded), the edit made by hand on its `DynamicCache` after the last latent;
- `masking="reference"`: the oracle is the hand-written GPT-2 forward of
  `tests/tracing/test_reference_masking.py` (the published CUDA rule for the pads' rows), the edit
  made on its own list of key/value tensors.

A debugging script once seemed to show the session disagreeing with the driver under KV steering; it
drew fresh random directions from one generator for every (masking, executor) run, so each run was
steered differently. With the same directions both executors agree token for token and bit for bit;
`test_each_draw_is_the_same_on_both_executors` pins that (the script's four draws, both executors).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from factories import make_converted, make_reference_checkpoint
from reference_impl import cache_kwargs, output_cache

from nnsight_codi.interventions import AddVector, KVSteer, PatchLatent
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.capture_hook import Capture
from nnsight_codi.tracing.loop import run_loop

QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "he loses 2 pens . how many ?",
             "the answer is"]  # left padding of 0, 3 and 6 positions
K, NEW, COEF = 3, 6, 4.0


def _hand_gpt2():
    """`HandGPT2` of tests/tracing/test_reference_masking.py (a by-hand GPT-2 forward, its own cache)."""
    path = Path(__file__).resolve().parents[1] / "tracing" / "test_reference_masking.py"
    spec = importlib.util.spec_from_file_location("_reference_masking_oracle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HandGPT2


@pytest.fixture(scope="module")
def codi(tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp("kv"), "gpt2", num_latents=K), dtype="float64")


def _shape(codi):
    cfg = codi._module.config
    return codi.num_layers, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads


def _directions(codi, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = _shape(codi)
    return (torch.randn(*shape, generator=g, dtype=torch.float64),
            torch.randn(*shape, generator=g, dtype=torch.float64))


def _steer(codi, dk, dv):
    hook = KVSteer(dk.clone(), dv.clone(), num_latents=K, coef_k=COEF, coef_v=COEF, positions="latents")
    hook.validate(*_shape(codi))
    return hook


def _cut(tokens, eos):
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


def ours(codi, hooks, masking, remote):
    capture = Capture(["kv"], list(range(codi.num_layers + 1)), K)
    tokens, records = run_loop(codi, codi.encode(QUESTIONS), [*hooks, capture], num_latents=K, max_new_tokens=NEW,
                               masking=masking, remote=remote)
    (kv,) = [t for name, _, t in records if name == "kv"]   # [batch, block, 2, head, seq, head_dim]
    return tokens, kv


def _edit(keys, values, dk, dv):
    """The steering edit by hand: the K latent entries of every block, keys and values."""
    for b in range(dk.shape[0]):
        keys[b][:, :, -K:] += COEF * dk[b][None, :, None, :]
        values[b][:, :, -K:] += COEF * dv[b][None, :, None, :]


@torch.no_grad()
def plain_exact(codi, question, dk, dv):
    """One example alone (= exact masking), HF module, no nnsight: (answer ids, edited kv [block, 2, head, seq, hd])."""
    lm, cfg = codi._module, codi.codi_config
    out = lm(input_ids=torch.tensor([codi.prompt_ids(question)]), use_cache=True, output_hidden_states=True)
    kv, h = output_cache(out), out.hidden_states[-1][:, -1:]
    for _ in range(K):
        out = lm(inputs_embeds=codi.prj._module(h), **cache_kwargs(kv), use_cache=True, output_hidden_states=True)
        kv, h = output_cache(out), out.hidden_states[-1][:, -1:]
    _edit([layer.keys for layer in kv.layers], [layer.values for layer in kv.layers], dk, dv)
    cache = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in kv.layers]).clone()
    embed, x, answer = lm.get_input_embeddings(), None, []
    x = embed(torch.tensor([[cfg.eot_id]]))
    for _ in range(NEW):
        out = lm(inputs_embeds=x, **cache_kwargs(kv), use_cache=True)
        kv = output_cache(out)
        logits = out.logits[:, -1].clone()
        logits[:, cfg.eot_id] = -float("inf")
        nxt = int(logits.argmax(-1))
        answer.append(nxt)
        if nxt == cfg.eos_id:
            break
        x = embed(torch.tensor([[nxt]]))
    return answer, cache


@torch.no_grad()
def plain_reference(codi, dk, dv):
    """The reference's batched loop by hand (CUDA rule for the pads' rows), with the edit on its own cache."""
    lm, cfg = codi._module, codi.codi_config
    prompts = codi.encode(QUESTIONS)
    ids, mask = prompts.input_ids, prompts.attention_mask.bool()
    t = ids.shape[1]
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None] & mask[:, None, :]
    net = _hand_gpt2()(lm, "all")
    wte = lm.transformer.wte
    h = net.forward(wte(ids), allowed)[:, -1:]
    for _ in range(K):
        h = net.forward(codi.prj._module(h))[:, -1:]
    keys, values = [k.clone() for k, _ in net.cache], [v.clone() for _, v in net.cache]
    _edit(keys, values, dk, dv)
    net.cache = list(zip(keys, values))
    cache = torch.stack([torch.stack([k, v], 1) for k, v in net.cache], 1).clone()  # [batch, block, 2, ...]
    x = wte(torch.full((ids.shape[0], 1), cfg.eot_id))
    out, done = [], torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(NEW):
        logits = net.forward(x)[:, -1] @ wte.weight.T
        logits[:, cfg.eot_id] = float("-inf")
        nxt = torch.where(done, torch.full_like(logits[:, 0], cfg.eos_id, dtype=torch.long), logits.argmax(-1))
        done |= nxt == cfg.eos_id
        out.append(nxt)
        x = wte(nxt[:, None])
    return torch.stack(out, 1), cache


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-9 * float(expected.abs().max()), rtol=0)


@pytest.mark.parametrize("masking", ["exact", "reference"])
def test_large_kv_edit_same_on_driver_session_and_plain_loop(codi, masking):
    eos = codi.codi_config.eos_id
    dk, dv = _directions(codi)
    base, _ = ours(codi, [], masking, None)
    driver, driver_kv = ours(codi, [_steer(codi, dk, dv)], masking, None)
    session, session_kv = ours(codi, [_steer(codi, dk, dv)], masking, "local")
    # the two executors: the same calls on the same tensors
    assert torch.equal(driver, session)
    assert torch.equal(driver_kv, session_kv)
    assert _cut(driver, eos) != _cut(base, eos), "the edit changed no answer: the comparison tests nothing"
    # an independent loop
    lengths = [len(codi.prompt_ids(q)) for q in QUESTIONS]
    assert len(set(lengths)) == 3  # batched with left padding
    if masking == "exact":
        for i, q in enumerate(QUESTIONS):
            answer, kv = plain_exact(codi, q, dk, dv)
            assert _cut(driver[i:i + 1], eos)[0] == answer
            _close(driver_kv[i, ..., -(lengths[i] + K):, :], kv)
    else:
        want, kv = plain_reference(codi, dk, dv)
        assert _cut(driver, eos) == _cut(want, eos)
        _close(driver_kv, kv)


def test_each_draw_is_the_same_on_both_executors(codi):
    """The debugging script's four random draws: each gives one answer whatever the executor, and the draws
    differ from each other (which is what the script's rows showed)."""
    g = torch.Generator().manual_seed(0)
    shape = _shape(codi)
    draws = [(torch.randn(*shape, generator=g, dtype=torch.float64), torch.randn(*shape, generator=g, dtype=torch.float64))
             for _ in range(4)]
    answers = []
    for masking in ("exact", "reference"):
        for dk, dv in draws:
            driver, _ = ours(codi, [_steer(codi, dk, dv)], masking, None)
            session, _ = ours(codi, [_steer(codi, dk, dv)], masking, "local")
            assert torch.equal(driver, session)
            answers.append(driver.tolist())
    assert len({str(a) for a in answers}) > 1


@pytest.mark.parametrize("masking", ["exact", "reference"])
def test_large_hidden_edits_same_on_driver_and_session(codi, masking):
    torch.manual_seed(3)
    d = codi.hidden_size
    hooks = lambda: [AddVector(torch.randn(d, generator=torch.Generator().manual_seed(1)) * 20, 1, [0, 2], 3.0,
                               all_positions=True),
                     PatchLatent(1, torch.randn(d, generator=torch.Generator().manual_seed(2)) * 10)]
    capture = lambda: Capture(["hidden", "latent_input"], list(range(codi.num_layers + 1)), K)
    runs = []
    for remote in (None, "local"):
        runs.append(run_loop(codi, codi.encode(QUESTIONS), [*hooks(), capture()], num_latents=K, max_new_tokens=NEW,
                             masking=masking, remote=remote))
    (a, ra), (b, rb) = runs
    assert torch.equal(a, b)
    assert [(n, s) for n, s, _ in ra] == [(n, s) for n, s, _ in rb]
    for (_, _, x), (_, _, y) in zip(ra, rb):
        assert torch.equal(x, y)
    base, _ = run_loop(codi, codi.encode(QUESTIONS), [], num_latents=K, max_new_tokens=NEW, masking=masking)
    assert not torch.equal(a, base)


@pytest.mark.parametrize("remote", [None, "local"])
def test_kv_edit_on_lora_interventions_equals_merged(tmp_path_factory, remote):
    """Base LM + LoRA interventions (sessions only) steers the cache as the merged model's driver does."""
    ref = make_reference_checkpoint(tmp_path_factory.mktemp("lora"), "gpt2")
    merged = load_model(ref["path"], base=str(ref["base_dir"]), dtype="float64")
    inter = load_model(ref["path"], base=str(ref["base_dir"]), dtype="float64", lora_mode="interventions")
    dk, dv = _directions(merged, seed=5)
    k = merged.num_latents

    def steer():
        hook = KVSteer(dk.clone(), dv.clone(), num_latents=k, coef_k=COEF, coef_v=COEF)
        hook.validate(*_shape(merged))
        return [hook, Capture(["kv"], list(range(merged.num_layers + 1)), k)]

    want, want_records = run_loop(merged, merged.encode(QUESTIONS), steer(), max_new_tokens=NEW)
    got, got_records = run_loop(inter, inter.encode(QUESTIONS), steer(), max_new_tokens=NEW, remote=remote)
    base, _ = run_loop(merged, merged.encode(QUESTIONS), [], max_new_tokens=NEW)
    assert torch.equal(want, got)
    assert not torch.equal(want, base)
    (wkv,) = [t for n, _, t in want_records if n == "kv"]
    (gkv,) = [t for n, _, t in got_records if n == "kv"]
    torch.testing.assert_close(gkv, wkv, atol=1e-8 * float(wkv.abs().max()), rtol=0)
