"""Forking the latent loop: a run continued from a kept prefix equals the run made whole.

Every condition kind (KV-cache steering, hidden steering with and without the extra latent, latent
and residual patching, early answering, forced answers) is run as a branch of one trunk and
compared, exactly (token ids and every captured activation), with the unforked run: batched and one
question at a time, `exact` and `reference` masking, traced driver and `remote="local"` session. A
branch's edits never reach the shared prefix or a sibling.
"""

from __future__ import annotations

import pytest
import torch
from factories import make_converted

from nnsight_codi.interventions import AddVector, ForceAnswer, KVSteer, PatchLatent, PatchResidual
from nnsight_codi.loading import load_model
from nnsight_codi.tracing import loop as loop_module
from nnsight_codi.tracing.branches import Branch, divergence_step, run_branches
from nnsight_codi.tracing.capture_hook import Capture
from nnsight_codi.tracing.loop import LoopSnapshot, _segment, run_loop

QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "how many pens ?",
             "he loses 2 pens .", "tom has 12 pens . he loses 5 pens . he gets 9 more . how many ?"]
K = 3


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def codi(request, tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp(request.param), request.param, num_latents=K))


def _shape(codi):
    cfg = codi._module.config
    heads = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    return codi.num_layers, heads, head_dim, codi.hidden_size


def _branches(codi, batch: int) -> dict[str, Branch]:
    """One branch per condition kind, with edits large enough to change the run."""
    layers, heads, head_dim, dim = _shape(codi)
    g = torch.Generator().manual_seed(0)

    def kv(positions: str) -> KVSteer:
        hook = KVSteer(torch.randn(layers, heads, head_dim, generator=g), torch.randn(layers, heads, head_dim, generator=g),
                       K, 3.0, 3.0, positions=positions)
        hook.validate(layers, heads, head_dim)
        return hook

    return {
        "none": Branch([]),
        "kv": Branch([kv("latents")]),
        "kv_all": Branch([kv("all")]),
        "hidden_extra": Branch([AddVector(torch.randn(dim, generator=g) * 20, layers, [K], 1.0)], K + 1),
        "hidden_at_1": Branch([AddVector(torch.randn(dim, generator=g) * 20, 1, [1], 1.0)]),
        "patch_2": Branch([PatchLatent(2, torch.randn(batch, dim, generator=g) * 5)]),
        "residual_bot": Branch([PatchResidual(0, 1, torch.randn(batch, dim, generator=g) * 5)]),
        "early_1": Branch([], 1),
        "early_0": Branch([], 0),
        "more_latents": Branch([], K + 2),
    }


def _assert_runs_equal(forked, unforked, names):
    for name, (ta, ra), (tb, rb) in zip(names, forked, unforked):
        assert torch.equal(ta, tb), f"{name}: answer ids differ"
        assert [(n, s) for n, s, _ in ra] == [(n, s) for n, s, _ in rb], f"{name}: records differ"
        for (n, s, a), (_, _, b) in zip(ra, rb):
            assert torch.equal(a, b), f"{name}: {n} at step {s} differs"


@pytest.mark.parametrize("remote", [None, "local"])
@pytest.mark.parametrize("masking", ["exact", "reference"])
@pytest.mark.parametrize("batched", [True, False])
def test_branches_equal_unforked_runs(codi, remote, masking, batched):
    groups = [QUESTIONS] if batched else [[q] for q in QUESTIONS[:2]]
    layers = list(range(codi.num_layers + 1))
    for questions in groups:
        prompts = codi.encode(questions)
        branches = _branches(codi, len(questions))
        capture = Capture(["hidden", "latent_input", "kv"], layers, K)
        with torch.inference_mode():
            forked = run_branches(codi, prompts, list(branches.values()), shared=[capture], max_new_tokens=5,
                                  masking=masking, remote=remote)
            unforked = [run_loop(codi, prompts, [*b.hooks, capture], num_latents=b.num_latents, max_new_tokens=5,
                                 masking=masking, remote=remote) for b in branches.values()]
        _assert_runs_equal(forked, unforked, list(branches))
        # not vacuous: each edit changed its run after the fork (the first hidden state read after it)
        runs = dict(zip(branches, forked))
        base = {(n, s): t for n, s, t in runs["none"][1]}
        for name, (start, step) in {"kv": (K, K + 1), "hidden_extra": (K, K + 1), "patch_2": (2, 2),
                                    "hidden_at_1": (1, 2), "residual_bot": (0, 1)}.items():
            mine = {(n, s): t for n, s, t in runs[name][1]}
            key = (f"hidden/{codi.num_layers}", step)
            assert not torch.equal(mine[key], base[key]), f"{name} did not change the run"
            assert all(torch.equal(mine[k], base[k]) for k in base if k[1] < start), f"{name}: the prefix moved"


def test_forced_answers_branch_at_the_patch(codi):
    """Thought-anchor shape: a shared `ForceAnswer` on the answer steps, a latent patch per branch."""
    prompts = codi.encode(QUESTIONS)
    _, _, _, dim = _shape(codi)
    with torch.inference_mode():
        tokens = codi.latent_generate(prompts, max_new_tokens=4)
        force = ForceAnswer(tokens, K, codi.codi_config.eos_id, codi.codi_config.eot_id)
        branches = [Branch([])] + [Branch([PatchLatent(k, torch.zeros(dim))]) for k in range(1, K + 1)]
        kw = dict(max_new_tokens=tokens.shape[1], answer_steps=force.answer_steps)
        forked = run_branches(codi, prompts, branches, shared=[force], **kw)
        unforked = run_branches(codi, prompts, branches, shared=[force], fork=False, **kw)
    _assert_runs_equal(forked, unforked, range(len(branches)))
    assert torch.equal(force.total(forked[0][1]), force.total(unforked[0][1]))


def test_divergence_steps():
    layers = 2
    kv = KVSteer(torch.zeros(layers, 1, 4), torch.zeros(layers, 1, 4), K)
    assert divergence_step([kv], K, K) == K                                   # edits the cache after latent K
    assert divergence_step([PatchLatent(2, torch.zeros(4))], K, K) == 2       # replaces z_2 at step 2
    assert divergence_step([AddVector(torch.zeros(4), 2, [K])], K + 1, K) == K
    assert divergence_step([], 1, K) == 2                                     # eot right after latent 1
    assert divergence_step([], K, K) is None                                  # the trunk itself


def test_a_branch_never_reaches_the_prefix_or_a_sibling(codi):
    """The kept prefix and a sibling are unchanged by a branch that edits every cached position in place.

    Shares the cache by reference (fork_cache = identity) and the sibling's answer changes or it
    fails outright: the test sees sharing."""
    prompts = codi.encode(QUESTIONS)
    layers, heads, head_dim, _ = _shape(codi)
    edit = KVSteer(torch.full((layers, heads, head_dim), 5.0), torch.full((layers, heads, head_dim), -5.0), K,
                   positions="all")
    edit.validate(layers, heads, head_dim)
    with torch.inference_mode():
        whole = codi.latent_generate(prompts, max_new_tokens=5)
        steered, _ = run_loop(codi, prompts, [edit], max_new_tokens=5)
        prefix = codi.latent_generate(prompts, max_new_tokens=5, stop_at=K)
        assert isinstance(prefix, LoopSnapshot) and prefix.step == K
        kept = [(layer.keys.clone(), layer.values.clone()) for layer in prefix.cache.layers]
        state_before = (prefix.state.mask.clone(), prefix.state.last_hidden.clone(), list(prefix.state.tokens))
        first, _ = _segment(codi, prefix.branch(), [edit], None, K + 1, False)
        sibling, _ = _segment(codi, prefix.branch(), [], None, K + 1, False)
        assert torch.equal(first, steered) and not torch.equal(first, whole)
        assert torch.equal(sibling, whole)
        for (k0, v0), layer in zip(kept, prefix.cache.layers):
            assert torch.equal(layer.keys, k0) and torch.equal(layer.values, v0)
            assert layer.keys.shape[-2] == prompts.input_ids.shape[1] + K - 1  # prompt + latents 1..K-1: nothing appended
        assert prefix.step == K and torch.equal(prefix.state.mask, state_before[0])
        assert torch.equal(prefix.state.last_hidden, state_before[1]) and prefix.state.tokens == state_before[2]
        # the trunk continued after its branches equals the whole run
        assert torch.equal(codi.latent_generate(prefix), whole)
        # the same with the cache shared by reference: the sibling no longer equals the whole run
        prefix = codi.latent_generate(prompts, max_new_tokens=5, stop_at=K)
        original = loop_module.fork_cache
        loop_module.fork_cache = lambda cache: cache
        try:
            _segment(codi, prefix.branch(), [edit], None, K + 1, False)
            try:
                shared, _ = _segment(codi, prefix.branch(), [], None, K + 1, False)
                leaked = not torch.equal(shared, whole)
            except Exception:  # noqa: BLE001 - a cache longer than the mask may also fail outright
                leaked = True
        finally:
            loop_module.fork_cache = original
        assert leaked


def test_fork_to_another_k_only_before_the_steps_differ(codi):
    prompts = codi.encode(QUESTIONS[:1])
    snap = codi.latent_generate(prompts, max_new_tokens=3, stop_at=2)      # bot, latent1 ran
    assert snap.branch(num_latents=1).state.eot_step == 2                  # eot next: allowed
    snap = codi.latent_generate(prompts, max_new_tokens=3, stop_at=3)      # latent2 ran too
    with pytest.raises(ValueError, match="cannot fork at step 3 to 1 latents"):
        snap.branch(num_latents=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        snap.branch(max_new_tokens=0)


def test_one_session_request_carries_every_branch(codi, monkeypatch):
    from nnsight.schema.request import RequestModel

    sizes: list[int] = []
    original = RequestModel.serialize.__func__

    def counting(cls, tracer, compress=False):
        blob = original(cls, tracer, compress)
        sizes.append(len(blob))
        return blob

    monkeypatch.setattr(RequestModel, "serialize", classmethod(counting))
    prompts = codi.encode(QUESTIONS)
    branches = list(_branches(codi, len(QUESTIONS)).values())
    with torch.inference_mode():
        forked = run_branches(codi, prompts, branches, max_new_tokens=4, remote="local")
        assert len(sizes) == 1
        sizes.clear()
        unforked = run_branches(codi, prompts, branches, max_new_tokens=4, remote="local", fork=False)
        assert len(sizes) == len(branches)
    _assert_runs_equal(forked, unforked, range(len(branches)))


@pytest.mark.parametrize("remote", [None, "local"])
def test_without_the_trunk_among_the_branches_it_stops_at_the_last_fork(codi, remote):
    prompts = codi.encode(QUESTIONS)
    branches = [b for name, b in _branches(codi, len(QUESTIONS)).items() if name in ("kv", "patch_2", "early_1")]
    with torch.inference_mode():
        forked = run_branches(codi, prompts, branches, max_new_tokens=4, remote=remote)
        unforked = run_branches(codi, prompts, branches, max_new_tokens=4, remote=remote, fork=False)
    _assert_runs_equal(forked, unforked, range(len(branches)))
