"""Every request kind on a real ndif 0.1.2 server on loopback, equal to a local run (issue #30).

Client: this environment (Python 3.11, transformers 5.2x). Server: `serve.py`'s own environment
(Python 3.12, transformers 5.19, nnsight 0.8.1, float32). Each test runs one kind remotely and locally and
compares answer ids exactly and tensors to float32 tolerance; `KINDS` records requests, bytes and seconds
per batch for the doc's table (`NNSIGHT_CODI_NDIF_TIMINGS=<file>` writes them as JSON).
"""

from __future__ import annotations

import json
import os
import sys
import time
import typing
from pathlib import Path
from typing import Any

import pytest
import torch

from nnsight_codi.interventions import AddVector, ForceAnswer, KVSteer, PatchLatent
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.branches import Branch, run_branches
from nnsight_codi.tracing.capture_hook import CAPTURABLE, Capture
from nnsight_codi.tracing.codi_model import eager_attention
from nnsight_codi.tracing.loop import run_loop
from nnsight_codi.tracing.remote import count_requests

pytestmark = pytest.mark.ndif_live
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: factories, cot_testlib
QUESTIONS = ["1 + 2 = ?", "3 * 4 - 5 = ?"]
KINDS: dict[str, dict] = {}
TOL: dict[str, Any] = dict(atol=2e-4, rtol=2e-4)  # float32 on both sides; server transformers 5.19 vs client 5.2x kernels


def timed(kind: str, fn, *args, **kwargs):
    """Run `fn` (a remote run), recording its requests, bytes and seconds under `kind`; then the local twin."""
    with count_requests() as log:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
    KINDS.setdefault(kind, {}).update(requests=log.requests, bytes=sum(log.raw_bytes), remote_s=round(seconds, 3))
    return result


def local_timed(kind: str, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    KINDS.setdefault(kind, {})["local_s"] = round(time.perf_counter() - start, 3)
    return result


@pytest.fixture(scope="module", autouse=True)
def _write_timings():
    yield
    target = os.environ.get("NNSIGHT_CODI_NDIF_TIMINGS")
    if target:
        Path(target).write_text(json.dumps(KINDS, indent=1))


def same_runs(local, remote, exact_tokens: bool = True):
    (tokens_a, recs_a), (tokens_b, recs_b) = local, remote
    assert tokens_a.tolist() == tokens_b.tolist()
    assert [(n, s) for n, s, _ in recs_a] == [(n, s) for n, s, _ in recs_b]
    for (n, s, a), (_, _, b) in zip(recs_a, recs_b):
        torch.testing.assert_close(torch.as_tensor(b).float(), torch.as_tensor(a).float(), **TOL,
                                   msg=lambda m, n=n, s=s: f"{n} at step {s}: {m}")


@pytest.fixture(scope="module")
def codi(ndif_server):
    model = load_model("tiny")
    object.__setattr__(model, "ndif_repo_id", ndif_server["models"]["tiny-codi"])
    return model


@pytest.fixture(scope="module")
def url(ndif_server):
    return ndif_server["api"]


def test_server_is_another_python_and_transformers(ndif_server):
    import transformers

    env = ndif_server["server_env"]
    server_python = str(env.get("python_version", ""))
    assert server_python.startswith("3.12"), env
    assert sys.version_info[:2] == (3, 11)
    packages = env.get("packages", {})
    assert packages.get("transformers") == "5.19.0" and transformers.__version__ != "5.19.0"


def test_eval(codi, url):
    prompts = codi.encode(QUESTIONS)
    remote = timed("eval", run_loop, codi, prompts, max_new_tokens=4, remote=url)
    local = local_timed("eval", run_loop, codi, prompts, max_new_tokens=4)
    same_runs(local, remote)


def test_capture_every_variable(codi, url):
    """hidden, latent_input, kv and the three attention variables in one request (eager attention on the
    server for this request only)."""
    prompts = codi.encode(QUESTIONS)
    layers = list(range(codi.num_layers + 1))
    k = codi.codi_config.num_latents

    def hook():
        return [Capture(list(CAPTURABLE), layers, k)]

    remote = timed("capture (all variables)", run_loop, codi, prompts, hook(), max_new_tokens=4, remote=url,
                   output_attentions=True)
    with eager_attention(codi._module):
        local = local_timed("capture (all variables)", run_loop, codi, prompts, hook(), max_new_tokens=4,
                            output_attentions=True)
    same_runs(local, remote)
    names = {n.split("/")[0] for n, _, _ in remote[1]}
    assert names == set(CAPTURABLE) | {"hidden"}
    # the hosted model is back on its own attention implementation: a run without weights still works
    again = run_loop(codi, prompts, max_new_tokens=4, remote=url)
    assert again[0].tolist() == local[0].tolist()


def _kv_hook(codi, coef=3.0):
    cfg = codi._module.config
    layers, heads = codi.num_layers, int(cfg.num_attention_heads)
    head_dim = cfg.hidden_size // heads
    g = torch.Generator().manual_seed(0)
    hook = KVSteer(torch.randn(layers, heads, head_dim, generator=g), torch.randn(layers, heads, head_dim, generator=g),
                   codi.codi_config.num_latents, coef, coef, positions="latents")
    hook.validate(layers, heads, head_dim)
    return hook


@pytest.mark.parametrize("kind", ["hidden", "kv", "patch"])
def test_steer(codi, url, kind):
    prompts = codi.encode(QUESTIONS)
    g = torch.Generator().manual_seed(1)
    k = codi.codi_config.num_latents
    if kind == "hidden":
        hook = AddVector(torch.randn(codi.hidden_size, generator=g) * 20, 1, list(range(1, k + 1)), 1.0)
    elif kind == "kv":
        hook = _kv_hook(codi)
    else:
        hook = PatchLatent(1, torch.randn(len(QUESTIONS), codi.hidden_size, generator=g) * 5)
    capture = Capture(["hidden"], [codi.num_layers], k)
    remote = timed(f"steer {kind}", run_loop, codi, prompts, [hook, capture], max_new_tokens=4, remote=url)
    local = local_timed(f"steer {kind}", run_loop, codi, prompts, [hook, capture], max_new_tokens=4)
    same_runs(local, remote)
    plain = run_loop(codi, prompts, [capture], max_new_tokens=4)
    assert not torch.equal(plain[1][-1][2], local[1][-1][2]), "the edit changed nothing: the test would be vacuous"


def test_sweep_branches_in_one_session(codi, url):
    """Anchors-style forced answers, latent patches, KV steering and early answers as branches of one trunk:
    one request."""
    prompts = codi.encode(QUESTIONS)
    k, dim = codi.codi_config.num_latents, codi.hidden_size
    tokens = codi.latent_generate(prompts, max_new_tokens=4)
    force = ForceAnswer(tokens, k, codi.codi_config.eos_id, codi.codi_config.eot_id)
    branches = [Branch([]), *[Branch([PatchLatent(i, torch.zeros(dim))]) for i in range(1, k + 1)],
                Branch([_kv_hook(codi)]), Branch([], 1), Branch([], 0)]
    kw = dict(max_new_tokens=tokens.shape[1], answer_steps=force.answer_steps)
    remote = timed("sweep (branches, one session)", run_branches, codi, prompts, branches, shared=[force],
                   remote=url, **kw)
    assert KINDS["sweep (branches, one session)"]["requests"] == 1
    local = local_timed("sweep (branches, one session)", run_branches, codi, prompts, branches, shared=[force], **kw)
    for a, b in zip(local, remote):
        same_runs(a, b)
    torch.testing.assert_close(force.total(remote[0][1]), force.total(local[0][1]), **TOL)


def test_lens_capture(codi, url, ndif_server, tmp_path):
    """The capture pipeline with lens read-outs, remote vs local: the same store."""
    import numpy as np

    from nnsight_codi.activation_capture import CaptureConfig, run_capture
    from nnsight_codi.store.reader import open_store

    variables = ("hidden", "latent_input", "kv", "lens", "answer_pred", "correct")
    common: dict[str, Any] = dict(model="tiny", limit=4, batch_size=4, max_new_tokens=4, variables=variables, lens_k=3)
    remote_cfg = CaptureConfig(**common, remote=url, ndif_model=ndif_server["models"]["tiny-codi"])
    timed("capture command (lens)", run_capture, tmp_path / "remote.zarr", remote_cfg, progress=False)
    local_timed("capture command (lens)", run_capture, tmp_path / "local.zarr", CaptureConfig(**common),
                progress=False)
    remote, local = open_store(tmp_path / "remote.zarr"), open_store(tmp_path / "local.zarr")
    names = [n for n in local.data_vars]
    assert any("lens" in str(n) for n in names) and set(names) == set(remote.data_vars)
    for name in names:
        a, b = np.asarray(local[name].values), np.asarray(remote[name].values)
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(b, a, atol=2e-4, rtol=2e-4, err_msg=name)
        else:
            assert (a == b).all(), name


def test_cot_vectors_on_a_plain_lm(ndif_server, url):
    """CoT vectors: steered generation and position means on the hosted tiny instruct LM."""
    from nnsight import TransformersModel

    from nnsight_codi.cot.cot_steering import Steering
    from nnsight_codi.cot.generation import generate_ids, position_means
    from nnsight_codi.cot.prompts import prompt_ids
    from nnsight_codi.loading import load_instruct_model

    local_model = load_instruct_model("tiny-instruct")
    tok = local_model.tokenizer
    hosted = TransformersModel(ndif_server["models"]["tiny-instruct"], tokenizer=tok, task="text-generation")
    prompts = [prompt_ids(tok, q, "cot") for q in ["tom has 3 pens .", "he gets 4 more ."]]
    hook = [Steering(torch.randn(local_model._module.config.n_embd, generator=torch.Generator().manual_seed(1)),
                     1, 2.0, "continuous")]
    remote = timed("CoT vectors: steered generation", generate_ids, hosted, prompts, hook, max_new_tokens=3,
                   remote=url)
    local = local_timed("CoT vectors: steered generation", generate_ids, local_model, prompts, hook, max_new_tokens=3)
    assert remote[0] == local[0]
    means = timed("CoT vectors: position means", position_means, hosted, prompts, local[0], remote=url)
    expected = local_timed("CoT vectors: position means", position_means, local_model, prompts, local[0])
    torch.testing.assert_close(means, expected, **TOL)


@pytest.mark.parametrize("feedback", [None, "pause"])
def test_coconut_family(ndif_server, url, feedback):
    """The shipped tiny Coconut (the final-normed hidden state fed back, no projection) and its pause control on
    the hosted model: answers and the latent inputs equal a local run."""
    model = load_model("tiny-coconut")
    assert model.latent_family == "coconut"
    object.__setattr__(model, "ndif_repo_id", ndif_server["models"]["tiny-coconut"])
    prompts = model.encode(QUESTIONS, feedback=feedback)
    hooks = [Capture(["latent_input", "hidden"], [model.num_layers], model.num_latents)]
    remote = timed(f"Coconut ({feedback or 'latent'})", run_loop, model, prompts, hooks, max_new_tokens=6, remote=url)
    local = local_timed(f"Coconut ({feedback or 'latent'})", run_loop, model, prompts, hooks, max_new_tokens=6)
    same_runs(local, remote)


def test_soft_thinking_on_the_hosted_instruct_lm(ndif_server, url):
    """Soft Thinking (top-k embedding mix, cold stop) on the hosted tiny instruct LM equals a local run."""
    from nnsight_codi.loading import load_soft_thinking

    model = load_soft_thinking("tiny-instruct", num_latents=4, top_k=5, cold_entropy=0.02, cold_patience=2)
    object.__setattr__(model, "ndif_repo_id", ndif_server["models"]["tiny-instruct"])
    prompts = model.encode(["tom has 3 pens . he gets 4 more . how many pens ?", "ann has 5 cats . she loses 2 ."])
    remote = timed("Soft Thinking", run_loop, model, prompts, max_new_tokens=6, remote=url)
    local = local_timed("Soft Thinking", run_loop, model, prompts, max_new_tokens=6)
    same_runs(local, remote)


def test_base_plus_lora_as_interventions(ndif_server, url):
    """A CODI checkpoint run as the hosted GPT-2-shaped base + its LoRA as interventions, base check first."""
    lora = ndif_server["lora"]
    inter = load_model(lora["path"], base=lora["base_dir"], dtype="float32", lora_mode="interventions")
    object.__setattr__(inter, "ndif_repo_id", ndif_server["models"]["lora-base"])
    timed("LoRA base check", inter.session_model, url)
    prompts = inter.encode(QUESTIONS)
    remote = timed("base + LoRA as interventions", run_loop, inter, prompts, max_new_tokens=3, remote=url)
    local = local_timed("base + LoRA as interventions", run_loop, inter, prompts, max_new_tokens=3)
    same_runs(local, remote)


# -- remote-check against the live server ---------------------------------------------------------------

class _PlantedInterface(typing.Protocol):
    def sites(self, step: int) -> list: ...


class PlantedProtocolHook(_PlantedInterface):
    """A step hook declared the typing way (what StepHook was before the fix): visits nothing, but its
    class ships by value with Python 3.11's Protocol internals, which a 3.12 server cannot load."""

    def sites(self, step: int) -> list:
        return []

    def visit(self, site, value, step, sink) -> None:
        return None


def test_remote_check_probes_every_kind(ndif_server, url, capsys):
    from nnsight_codi.cli import main

    code = main(["remote-check", "--model", "tiny", "--remote", url, "--ndif-model", ndif_server["models"]["tiny-codi"],
                 "--skip-audit", "--json"])
    report = json.loads(capsys.readouterr().out)
    probes = [c for c in report["checks"] if c["name"].startswith("probe ")]
    assert code == 0, report
    assert [c["name"] for c in probes] == [f"probe {k}" for k in
                                           ("eval", "capture", "attention", "steer-hidden", "steer-kv", "sweep")]
    env = next(c for c in report["checks"] if c["name"] == "environments")
    assert "python 3.12" in env["detail"] and "differ: python, transformers" in env["detail"]


def test_remote_check_fails_when_the_request_breaks_on_the_servers_python(ndif_server, url, monkeypatch, capsys):
    """E1 reverted in a planted hook: the audit-free probe sends it, the 3.12 server cannot read it, and
    remote-check fails naming both Pythons (where before it said ok)."""
    from nnsight_codi.cli import main
    from nnsight_codi.commands import remote_check

    original = remote_check._probe_run

    def planted(model, kind, remote):
        if remote is None:
            return original(model, kind, remote)
        return run_loop(model, model.encode(["1 + 1 = ?"]), [PlantedProtocolHook()], max_new_tokens=2, remote=remote)

    monkeypatch.setattr(remote_check, "_probe_run", planted)
    code = main(["remote-check", "--model", "tiny", "--remote", url, "--ndif-model", ndif_server["models"]["tiny-codi"],
                 "--skip-audit", "--command", "eval"])
    out, err = capsys.readouterr()
    assert code == 1
    line = next(x for x in out.splitlines() if x.startswith("FAIL probe eval"))
    assert "_is_callable_members_only" in line and "could not load the request" in line
    assert "python 3.12.1 / 3.11" in line
