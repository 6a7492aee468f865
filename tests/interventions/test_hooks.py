"""Each intervention through nnsight equals the same edit in an independent plain-PyTorch loop;
coefficient 0 is bit-identical; KV steering edits exactly the intended cache entries; the session
executor (remote="local") gives the same answers."""

from __future__ import annotations

import pytest
import torch
from factories import make_converted
from reference_impl import blocks_of

from nnsight_codi.interventions import AddVector, ForceAnswer, KVSteer, PatchLatent, PatchResidual
from nnsight_codi.loading import load_model
from nnsight_codi.models.kv_cache import cache_kwargs, output_cache
from nnsight_codi.tracing.capture_hook import Capture
from nnsight_codi.tracing.loop import run_loop

QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "how many pens ?",
             "he loses 2 pens .", "tom has 12 pens . he loses 5 pens . he gets 9 more . how many ?"]
K, NEW = 3, 5


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def codi(request, tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp(request.param), request.param, num_latents=K))


@torch.no_grad()
def plain_loop(codi, question: str, num_latents: int = K, residual=None, latent=None, cache=None, force=None):
    """The CODI loop by hand (batch 1, no nnsight), with optional edits:
    residual = (step, layer, fn(h_last) -> new h_last); latent = (step, z_new [dim]);
    cache = fn(kv) after the last latent; force = answer ids to feed (returns their log-probs)."""
    lm, cfg = codi._module, codi.codi_config
    blocks = blocks_of(lm)
    state = {"step": 0}
    handles = []
    if residual is not None:
        r_step, r_layer, fn = residual

        def edit(h):
            if state["step"] == r_step:
                h = h.clone()
                h[:, -1] = fn(h[:, -1])
            return h
        if r_layer == 0:
            handles.append(blocks[0].register_forward_pre_hook(
                lambda m, args, kwargs: ((edit(args[0]),) + args[1:], kwargs) if args else
                (args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}), with_kwargs=True))
        else:
            handles.append(blocks[r_layer - 1].register_forward_hook(
                lambda m, a, o: (edit(o[0]),) + tuple(o[1:]) if isinstance(o, tuple) else edit(o)))
    embed = lm.get_input_embeddings()
    try:
        ids = torch.tensor([codi.prompt_ids(question)])
        out = lm(input_ids=ids, use_cache=True, output_hidden_states=True)
        kv, h = output_cache(out), out.hidden_states[-1][:, -1:]
        for k in range(1, num_latents + 1):
            state["step"] = k
            z = codi.prj._module(h)
            if latent is not None and latent[0] == k:
                z = latent[1].reshape(1, 1, -1).to(z.dtype)
            out = lm(inputs_embeds=z, **cache_kwargs(kv), use_cache=True, output_hidden_states=True)
            kv, h = output_cache(out), out.hidden_states[-1][:, -1:]
        if cache is not None:
            cache(kv)
        state["step"] = num_latents + 1
        x, answer, logprobs = embed(torch.tensor([[cfg.eot_id]])), [], []
        for j in range(NEW if force is None else len(force)):
            out = lm(inputs_embeds=x, **cache_kwargs(kv), use_cache=True)
            kv = output_cache(out)
            state["step"] += 1
            logits = out.logits[:, -1].clone()
            if force is not None:
                logprobs.append(float(torch.log_softmax(logits.float(), -1)[0, force[j]]))
                nxt = force[j]
            else:
                logits[:, cfg.eot_id] = -float("inf")
                nxt = int(logits.argmax(-1))
            answer.append(nxt)
            if nxt == cfg.eos_id:
                break
            x = embed(torch.tensor([[nxt]]))
    finally:
        for h in handles:
            h.remove()
    return answer, logprobs


def ours(codi, hooks, num_latents=K, remote=None, questions=QUESTIONS, **kw):
    with torch.inference_mode():
        tokens, records = run_loop(codi, codi.encode(questions), hooks, num_latents=num_latents, max_new_tokens=NEW,
                                   remote=remote, **kw)
    return tokens, records


def rows(codi, tokens):
    eos = codi.codi_config.eos_id
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def assert_same_as_plain(codi, hooks, changed_somewhere=True, num_latents=K, **plain_edit):
    tokens, _ = ours(codi, hooks, num_latents=num_latents)
    mine = rows(codi, tokens)
    expected = [plain_loop(codi, q, num_latents=num_latents, **plain_edit)[0] for q in QUESTIONS]
    assert mine == expected
    if changed_somewhere:
        base = [plain_loop(codi, q, num_latents=num_latents)[0] for q in QUESTIONS]
        assert expected != base, "the edit changed no answer: the comparison tests nothing"


def test_coefficient_zero_is_bit_identical(codi):
    base, _ = ours(codi, [])
    v = torch.randn(codi.hidden_size) * 100
    kv = torch.randn(codi.num_layers, *_kv_shape(codi)) * 100
    zero = [AddVector(v, layer=1, steps=[0, 2], coef=0.0, all_positions=True),
            KVSteer(kv, kv, num_latents=K, coef_k=0.0, coef_v=0.0, positions="all")]
    for hook in zero:
        tokens, _ = ours(codi, [hook])
        assert torch.equal(tokens, base)


def _kv_shape(codi):
    cfg = codi._module.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    return heads, cfg.hidden_size // cfg.num_attention_heads


@pytest.mark.parametrize("step,layer", [(2, 1), (0, 0), (K, 1)])
def test_hidden_add_equals_plain_loop(codi, step, layer):
    torch.manual_seed(step)
    v = torch.randn(codi.hidden_size)
    coef = 8.0
    assert_same_as_plain(codi, [AddVector(v, layer, [step], coef)], residual=(step, layer, lambda h: h + coef * v))


def test_extra_latent_step_equals_plain_loop(codi):
    torch.manual_seed(5)
    v = torch.randn(codi.hidden_size)
    layer = codi.num_layers  # the last layer at the last latent: only the extra step carries it
    assert_same_as_plain(codi, [AddVector(v, layer, [K], 10.0)], num_latents=K + 1,
                         residual=(K, layer, lambda h: h + 10.0 * v))
    # without the extra step the same edit cannot reach the answer
    base, _ = ours(codi, [])
    same, _ = ours(codi, [AddVector(v, layer, [K], 10.0)])
    assert torch.equal(same, base)


@pytest.mark.parametrize("kind", ["given", "zero", "mean"])
def test_latent_patch_equals_plain_loop(codi, kind):
    torch.manual_seed(7)
    z = {"given": torch.randn(codi.hidden_size) * 3, "zero": torch.zeros(codi.hidden_size),
         "mean": torch.randn(codi.hidden_size)}[kind]
    assert_same_as_plain(codi, [PatchLatent(2, z, kind)], latent=(2, z), changed_somewhere=kind == "given")


def test_random_patch_rows_are_per_example_and_equal_plain_loop(codi):
    from nnsight_codi.interventions import LatentStats, latent_patch_values

    stats = LatentStats(torch.randn(K + 2, codi.hidden_size), torch.rand(K + 2, codi.hidden_size) * 4)
    values = latent_patch_values("random", 1, stats, 4, example_seeds=[10, 11, 12, 13], seed=3)
    again = latent_patch_values("random", 1, stats, 2, example_seeds=[12, 13], seed=3)
    torch.testing.assert_close(values[2:], again)  # a row's draw does not depend on the batch
    assert not torch.allclose(values[0], values[1])
    noise = (values - stats.mean[1]) / stats.std[1]
    assert abs(float(noise.mean())) < 0.3 and 0.7 < float(noise.std()) < 1.3
    tokens, _ = ours(codi, [PatchLatent(1, values, "random")])
    expected = [plain_loop(codi, q, latent=(1, values[i]))[0] for i, q in enumerate(QUESTIONS)]
    assert rows(codi, tokens) == expected


def test_kv_add_with_separate_coefficients_equals_plain_loop(codi):
    torch.manual_seed(11)
    blocks = codi.num_layers
    dk, dv = torch.randn(blocks, *_kv_shape(codi)), torch.randn(blocks, *_kv_shape(codi))

    def edit(kv):
        for b in [0, blocks - 1]:
            kv.layers[b].keys[:, :, -K:] += 3.0 * dk[b][:, None]
            kv.layers[b].values[:, :, -K:] += -2.0 * dv[b][:, None]

    hook = KVSteer(dk, dv, num_latents=K, coef_k=3.0, coef_v=-2.0, blocks=[0, blocks - 1], positions="latents")
    hook.validate(blocks, *_kv_shape(codi))
    assert_same_as_plain(codi, [hook], cache=edit)


@pytest.mark.parametrize("positions", ["latents", "last", "all"])
def test_kv_steering_changes_exactly_the_intended_entries(codi, positions):
    torch.manual_seed(13)
    blocks = codi.num_layers
    dk, dv = torch.randn(blocks, *_kv_shape(codi)), torch.randn(blocks, *_kv_shape(codi))
    layers = list(range(codi.num_layers + 1))
    capture = Capture(["kv"], layers, K)
    steer = KVSteer(dk, dv, num_latents=K, coef_k=0.5, coef_v=2.0, blocks=[1], positions=positions)
    steer.validate(blocks, *_kv_shape(codi))
    _, base = ours(codi, [capture], questions=QUESTIONS[:2])
    _, steered = ours(codi, [steer, capture], questions=QUESTIONS[:2])  # capture sees the edited cache
    (_, _, a), (_, _, b) = base[0], steered[0]
    diff = b - a                                          # [batch, block, 2, head, seq, head_dim]
    seq = diff.shape[-2]
    pos = {"latents": list(range(seq - K, seq)), "last": [seq - 1], "all": list(range(seq))}[positions]
    expected = torch.zeros_like(diff)
    expected[:, 1, 0][..., pos, :] = 0.5 * dk[1][None, :, None, :]
    expected[:, 1, 1][..., pos, :] = 2.0 * dv[1][None, :, None, :]
    torch.testing.assert_close(diff, expected, atol=1e-5, rtol=1e-5)
    assert (diff.abs() > 0).sum() == (expected.abs() > 0).sum()


def test_forced_answer_logprobs_equal_plain_loop(codi):
    base, _ = ours(codi, [])
    patch = PatchLatent(2, torch.randn(codi.hidden_size) * 3)
    force = ForceAnswer(base, K, codi.codi_config.eos_id)
    tokens, records = ours(codi, [patch, force], answer_steps=force.answer_steps)
    assert torch.equal(tokens, base)  # the forced answer was fed
    totals = force.total(records)
    for i, q in enumerate(QUESTIONS):
        forced = rows(codi, base[i:i + 1])[0]
        _, lps = plain_loop(codi, q, latent=(2, patch.values), force=forced)
        assert totals[i].item() == pytest.approx(sum(lps), abs=1e-4)


def test_activation_patch_equals_plain_loop(codi):
    torch.manual_seed(17)
    values = torch.randn(len(QUESTIONS), codi.hidden_size) * 4
    tokens, _ = ours(codi, [PatchResidual(1, 1, values)])
    expected = [plain_loop(codi, q, residual=(1, 1, lambda h, i=i: values[i:i + 1]))[0] for i, q in enumerate(QUESTIONS)]
    assert rows(codi, tokens) == expected


def test_session_executor_gives_the_same_interventions(codi):
    torch.manual_seed(19)
    v = torch.randn(codi.hidden_size)
    dk = torch.randn(codi.num_layers, *_kv_shape(codi))
    hooks = [AddVector(v, 1, [1], 5.0), PatchLatent(2, torch.randn(codi.hidden_size)),
             KVSteer(dk, -dk, num_latents=K, coef_k=1.0, coef_v=1.5)]
    local, _ = ours(codi, hooks)
    session, _ = ours(codi, hooks, remote="local")
    assert torch.equal(local, session)
    base, _ = ours(codi, [])
    assert not torch.equal(local, base)


def test_forced_answer_on_the_session_executor(codi):
    base, _ = ours(codi, [])
    totals = []
    for remote in (None, "local"):
        force = ForceAnswer(base, K, codi.codi_config.eos_id, codi.codi_config.eot_id)
        tokens, records = ours(codi, [PatchLatent(1, torch.ones(codi.hidden_size)), force], remote=remote,
                               answer_steps=force.answer_steps)
        assert torch.equal(tokens, base)
        totals.append(force.total(records))
    torch.testing.assert_close(totals[0], totals[1], atol=1e-5, rtol=1e-5)


def _cache_diff(codi, hooks, num_latents=K):
    """Steered minus unsteered KV cache after the last latent, `[batch, block, 2, head, seq, head_dim]`."""
    capture = Capture(["kv"], list(range(codi.num_layers + 1)), num_latents)
    _, base = ours(codi, [capture], num_latents=num_latents, questions=QUESTIONS[:2])
    _, steered = ours(codi, list(hooks) + [capture], num_latents=num_latents, questions=QUESTIONS[:2])
    return steered[0][2] - base[0][2]


@pytest.mark.parametrize("k", [1, 2, K])
def test_kv_twin_at_latent_k_edits_that_entry_alone_and_equals_plain_loop(codi, k):
    """`positions="latent<k>"` edits latent k's cache entry in every block and nothing else; the answers equal
    a plain loop that adds the same deltas at that entry (so a hook that ignored k would fail both)."""
    torch.manual_seed(23 + k)
    blocks = codi.num_layers
    dk, dv = torch.randn(blocks, *_kv_shape(codi)) * 3, torch.randn(blocks, *_kv_shape(codi)) * 3
    hook = KVSteer(dk, dv, num_latents=K, coef_k=1.0, coef_v=-1.0, positions=f"latent{k}")
    hook.validate(blocks, *_kv_shape(codi))
    diff = _cache_diff(codi, [hook])
    seq = diff.shape[-2]
    pos = seq - K - 1 + k                       # latent k's entry: the prompt (with bot), then z1 .. zK
    touched = (diff.abs() > 0).any(-1).any(-2).any(2).any(0).any(0)  # [seq]: any block, part, head, dim
    assert touched.nonzero().flatten().tolist() == [pos]
    torch.testing.assert_close(diff[:, :, 0, :, pos], dk[None].expand_as(diff[:, :, 0, :, pos]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(diff[:, :, 1, :, pos], -dv[None].expand_as(diff[:, :, 1, :, pos]), atol=1e-5, rtol=1e-5)

    def edit(kv):
        for b in range(blocks):
            kv.layers[b].keys[:, :, pos - seq] += dk[b]
            kv.layers[b].values[:, :, pos - seq] -= dv[b]

    tokens, _ = ours(codi, [hook])
    assert rows(codi, tokens) == [plain_loop(codi, q, cache=edit)[0] for q in QUESTIONS]


@pytest.mark.parametrize("k,layer", [(1, 0), (2, 1), (K, 2)])
def test_hidden_at_latent_k_touches_its_latent_and_later_only(codi, k, layer):
    """The hidden twin at (latent k, layer l): no cache entry before latent k moves; at latent k exactly the
    blocks that read layers >= l move (block b reads layer b); later latents move through z_{k+1}."""
    torch.manual_seed(29 + k)
    v = torch.randn(codi.hidden_size) * 5
    diff = _cache_diff(codi, [AddVector(v, layer, [k], 2.0)])
    seq = diff.shape[-2]
    pos = seq - K - 1 + k
    moved = (diff.abs() > 1e-6).any(-1).any(-2).any(2).any(0)  # [block, seq]
    assert not moved[:, :pos].any()
    assert moved[:, pos].tolist() == [b >= layer for b in range(codi.num_layers)]
    if k < K:
        assert moved[:, pos + 1:].any()
    # the condition-level twins are built at the same latent
    import numpy as np
    import xarray as xr

    from nnsight_codi.interventions.conditions import Condition, ModelShape, Resources, build_hooks

    shape = ModelShape.of(codi)
    latents = list(range(1, K + 1))
    heads, hd = _kv_shape(codi)
    vec = xr.Dataset({
        "vector": (("pair_a", "pair_b", "layer", "dim"), np.random.randn(K, K, codi.num_layers + 1, codi.hidden_size)),
        "kv_vector": (("pair_a", "pair_b", "block", "kv_part", "head", "head_dim"),
                      np.random.randn(K, K, codi.num_layers, 2, heads, hd))},
        coords={"pair_a": latents, "pair_b": latents, "layer": list(range(codi.num_layers + 1)),
                "kv_part": ["key", "value"]})
    res = Resources(vectors=vec)
    (hidden,), n_hidden = build_hooks(Condition("hidden", pair=(1, 2), coef=1.0, at=k, layer=layer,
                                                extra_latent_step=True), shape, res, [0])
    (kv,), n_kv = build_hooks(Condition("kv", pair=(1, 2), coef_k=1.0, coef_v=1.0, positions=f"latent{k}"),
                              shape, res, [0])
    assert (hidden.steps, hidden.layer, n_hidden) == ((k,), layer, K + 1)
    assert (kv.slice, n_kv) == (slice(k - K - 1, (k - K) or None), K)
