"""Every kind of request the project sends stays inside NDIF's sandbox whitelist (request_audit), with
the same answers as a local run; a planted by-value helper importing a non-whitelisted module fails."""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import pytest
import torch

from nnsight_codi.interventions.ablation import ForceAnswer
from nnsight_codi.interventions.patching import PatchLatent, PatchResidual
from nnsight_codi.interventions.steering import AddVector, KVSteer
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.capture_hook import CAPTURABLE, Capture
from nnsight_codi.tracing.loop import run_loop
from nnsight_codi.tracing.remote import count_requests
from nnsight_codi.tracing.request_audit import (
    RUNTIME_MODULES,
    RequestRefusedError,
    allowed,
    audit_request,
    check_request,
    interpreter_private,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cot"))  # cot_testlib: a tiny chat LM
QUESTIONS = ["1 + 2 = ?", "3 * 4 - 5 = ?"]


@pytest.fixture(scope="module")
def codi():
    model = load_model("tiny")
    model._module.set_attn_implementation("eager")  # attention capture reads the weights
    return model


def audited(fn, *args, **kwargs):
    """Run `fn` (a remote="local" run), audit every request it made; return (its result, reports)."""
    with count_requests(keep=True) as log:
        result = fn(*args, **kwargs)
    assert log.requests >= 1
    return result, [check_request(blob) for blob in log.blobs]


def _same(local, remote):
    (tokens_a, recs_a), (tokens_b, recs_b) = local, remote
    assert tokens_a.tolist() == tokens_b.tolist()
    assert [(n, s) for n, s, _ in recs_a] == [(n, s) for n, s, _ in recs_b]
    for (_, _, a), (_, _, b) in zip(recs_a, recs_b):
        torch.testing.assert_close(torch.as_tensor(b), torch.as_tensor(a), atol=1e-5, rtol=1e-5)


def test_whitelist_semantics():
    assert allowed("torch.nn.functional") and allowed("collections.abc") and allowed("operator")
    assert not allowed("operator.x") and not allowed("dataclasses") and not allowed("json")
    assert not allowed("nnsight_codi.tracing") and not allowed("pathlib") and not allowed("functools")
    assert ("builtins", True) in RUNTIME_MODULES


def test_eval_request(codi):
    prompts = codi.encode(QUESTIONS)
    (tokens, _), reports = audited(run_loop, codi, prompts, max_new_tokens=4, remote="local")
    assert tokens.tolist() == codi.latent_generate(prompts, max_new_tokens=4).tolist()
    assert reports[0].ok and "LatentLoopState" in reports[0].classes
    assert not reports[0].modules - {"collections", "nnsight", "torch", "typing"}


@pytest.mark.parametrize("variable", CAPTURABLE)
def test_capture_request_per_variable(codi, variable):
    layers = range(codi.num_layers + 1)
    hook = Capture([variable], layers, codi.num_latents)
    prompts = codi.encode(QUESTIONS)
    attn = variable.startswith("attention")
    local = run_loop(codi, prompts, [hook], max_new_tokens=3, output_attentions=attn)
    remote, _ = audited(run_loop, codi, prompts, [hook], max_new_tokens=3, remote="local", output_attentions=attn)
    _same(local, remote)


def test_steer_and_sweep_hook_requests(codi):
    prompts = codi.encode(QUESTIONS)
    dim, k = codi.hidden_size, codi.num_latents
    g = torch.Generator().manual_seed(0)
    heads = codi._module.config.n_head
    kv = torch.randn(codi.num_layers, heads, dim // heads, generator=g)
    hooks = [AddVector(torch.randn(dim, generator=g), 2, [1, 2], 3.0),
             KVSteer(kv, kv.flip(0), k, 0.5, 0.5),
             PatchLatent(1, torch.randn(dim, generator=g)),
             PatchResidual(2, 1, torch.randn(len(QUESTIONS), dim, generator=g))]
    local = run_loop(codi, prompts, hooks, max_new_tokens=3)
    remote, reports = audited(run_loop, codi, prompts, hooks, max_new_tokens=3, remote="local")
    _same(local, remote)
    assert {"AddVector", "KVSteer", "PatchLatent", "PatchResidual"} <= set(reports[0].classes)
    # the sweep's forced-answer scoring
    tokens = local[0][:, :2]
    force = ForceAnswer(tokens, k, codi.codi_config.eos_id, codi.codi_config.eot_id)
    kw = dict(max_new_tokens=tokens.shape[1], answer_steps=tokens.shape[1])
    _same(run_loop(codi, prompts, [force], **kw), audited(run_loop, codi, prompts, [force], remote="local", **kw)[0])


def test_cot_vector_requests():
    import cot_testlib as lib

    from nnsight_codi.cot.cot_steering import Steering
    from nnsight_codi.cot.generation import generate_ids, position_means
    from nnsight_codi.cot.prompts import prompt_ids

    model = lib.chat_lm()
    prompts = [prompt_ids(model.tokenizer, q, "cot") for q in ["tom has 3 pens .", "he gets 4 more ."]]
    hook = [Steering(torch.randn(model._module.config.n_embd, generator=torch.Generator().manual_seed(1)),
                     1, 2.0, "continuous")]
    local = generate_ids(model, prompts, hook, max_new_tokens=3)
    remote, _ = audited(generate_ids, model, prompts, hook, max_new_tokens=3, remote="local")
    assert remote[0] == local[0]
    means, _ = audited(position_means, model, prompts, local[0], remote="local")
    torch.testing.assert_close(means, position_means(model, prompts, local[0]), atol=1e-6, rtol=1e-6)


def test_lora_interventions_requests_and_base_check(tmp_path):
    from factories import make_reference_checkpoint

    ref = make_reference_checkpoint(tmp_path, "gpt2")
    inter = load_model(ref["path"], base=str(ref["base_dir"]), dtype="float64", lora_mode="interventions")
    _, reports = audited(inter.session_model, "local")  # the base weight check is a request of its own
    assert reports[0].ok
    prompts = inter.encode(QUESTIONS)
    local = run_loop(inter, prompts, max_new_tokens=3)
    remote, reports = audited(run_loop, inter, prompts, max_new_tokens=3, remote="local")
    _same(local, remote)
    assert "LoraAdapter" in reports[0].classes


# -- a planted by-value helper that NDIF refuses ------------------------------------------------------

def planted_helper(x):
    import json  # not on NDIF's whitelist: the import is refused where the request runs

    return x + len(json.dumps([1]))


def sneaky_builtin(x):
    return x + len(open.__name__)  # `open` is not among NDIF's builtins


def _request_with(fn):
    import cot_testlib as lib
    from nnsight import TransformersModel

    model: TransformersModel = lib.chat_lm()
    with count_requests(keep=True) as log:
        with model.trace(torch.tensor([[1, 2, 3]]), remote="local"):
            out = model.transformer.h[0].output
            fn(out)
    return log.blobs[0]


@pytest.mark.parametrize("fn, name", [(planted_helper, "'json'"), (sneaky_builtin, "'open'")])
def test_planted_helper_fails_the_audit(fn, name):
    blob = _request_with(fn)
    report = audit_request(blob)
    assert not report.ok and fn.__name__ in report.functions
    assert any(name in str(f) and fn.__name__ in str(f) for f in report.findings)
    with pytest.raises(RequestRefusedError, match=f"NDIF's sandbox would refuse.*{fn.__name__}"):
        check_request(blob)
    assert audit_request(_request_with(lambda out: out + 1)).ok


class PlantedProtocol(typing.Protocol):
    """A hook interface declared the typing way: subclasses carry Python's Protocol machinery."""

    def touch(self, x): ...


class PlantedHook(PlantedProtocol):
    def touch(self, x):
        return x + 1


PLANTED_HOOK = PlantedHook()


def planted_protocol_hook(x):
    return PLANTED_HOOK.touch(x)  # ships PlantedHook, its Protocol base's hooks and typing internals by value


def test_planted_protocol_hook_fails_the_audit():
    """A 3.11 client's `typing.Protocol` subclass shipped by value names 3.11-only typing internals
    (`_is_callable_members_only`), which a 3.12 server cannot load (issue E1): the audit says so."""
    report = audit_request(_request_with(planted_protocol_hook))
    assert not report.ok
    private = {f.name for f in report.findings if f.kind == "private"}
    assert "typing._ProtocolMeta" in private and all(n.startswith("typing._") for n in private)
    assert any(f.kind == "stdlib" and "_proto_hook" in f.where for f in report.findings)
    with pytest.raises(RequestRefusedError, match="interpreter-private name 'typing._"):
        check_request(_request_with(planted_protocol_hook))


def test_step_hook_requests_carry_no_interpreter_internals(codi):
    """The project's own hooks (`StepHook` is a Protocol for the type checker only) ship nothing private."""
    prompts = codi.encode(QUESTIONS)
    _, reports = audited(run_loop, codi, prompts, [Capture(["hidden"], [0, 1], 2)], max_new_tokens=2,
                         remote="local")
    for report in reports:
        assert not any(r.startswith("typing._") for r in report.references)
        assert not any(f.kind in ("private", "stdlib") for f in report.findings)


def test_interpreter_private_names():
    assert interpreter_private("typing", "_is_callable_members_only")
    assert interpreter_private("collections", "_tuplegetter")
    assert not interpreter_private("typing", "Any") and not interpreter_private("builtins", "_x")
    assert not interpreter_private("torch._utils", "_rebuild_tensor_v2")  # a package, not the interpreter
    assert not interpreter_private("copyreg", "__newobj__")


def test_cli_commands_with_remote_local_pass_the_audit(tmp_path):
    """What the commands send (eval, capture, steer hidden and patch), audited request by request."""
    from nnsight_codi.cli import main
    from nnsight_codi.interventions import save_vector_file

    save_vector_file(tmp_path / "v.safetensors", vector=torch.randn(128, generator=torch.Generator().manual_seed(2)))
    common = ["--model", "tiny", "--limit", "3", "--max-new-tokens", "3", "--remote", "local"]
    runs = [["eval", *common],
            ["capture", *common, "--out", str(tmp_path / "c.zarr")],
            ["steer", *common, "--mode", "hidden", "--vector", str(tmp_path / "v.safetensors"), "--at", "1",
             "--layer", "1", "--coef", "1", "--out", str(tmp_path / "s1")],
            ["steer", *common, "--mode", "patch", "--patch", "zero", "--at", "1", "--out", str(tmp_path / "s2")]]
    for argv in runs:
        with count_requests(keep=True) as log:
            assert main(argv) == 0, argv
        assert log.requests >= 1
        for blob in log.blobs:
            check_request(blob)


def test_portable_drops_methods_whose_constants_are_refused():
    """A method reading a module-level constant of a refused type (a compiled regex pickles as
    `re._compile`) does not run remotely, so the twin leaves it out; `AddVector` with step names
    (resolved in `__post_init__` through such a regex) still ships a request the audit accepts."""
    from nnsight_codi import steps
    from nnsight_codi.tracing.portable import portable, runs_remotely

    assert not runs_remotely(steps.parse_step)
    assert runs_remotely(steps.step_names)
    twin = portable(AddVector(torch.zeros(4), 1, ["latent1"], 2.0))
    assert twin.steps == (1,) and not hasattr(type(twin), "__post_init__")
