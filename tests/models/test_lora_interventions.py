"""A CODI checkpoint run as its base model + LoRA interventions equals the merged model.

Tiny GPT-2 (Conv1D) and tiny Llama (Linear) checkpoints in the reference key layout with random
non-zero LoRA, run locally and with `remote="local"` (serialised as NDIF would receive it).
Tolerance: float64 on both sides; hidden states agree to 1e-9 × max |h| (merged weights vs
activation-level LoRA only changes the order of float operations).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import (
    BASE_VOCAB,
    PREFIX,
    make_converted,
    make_reference_checkpoint,
    reference_state_dict,
    tiny_lm,
    word_tokenizer,
)

from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.loading import load_model
from nnsight_codi.models.codi_config import CodiFormatError
from nnsight_codi.models.lora_checkpoint import BaseMismatchError
from nnsight_codi.models.projection import build_projection
from nnsight_codi.store import open_store
from nnsight_codi.tracing.capture_hook import Capture
from nnsight_codi.tracing.loop import run_loop
from nnsight_codi.tracing.lora_interventions import LoraCodiModel
from nnsight_codi.tracing.remote import count_requests

QUESTIONS = ["tom has 3 pens . he gets 4 more .", "how many pens ?", "he loses 2 pens . the answer is"]
REL_TOL = 1e-9
MAX_NEW = 6


def assert_close_rel(actual, expected, rel=REL_TOL):
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, atol=rel * scale + 1e-12, rtol=0)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request, tmp_path_factory):
    """(merged model, base + interventions model, checkpoint parts) in float64."""
    ref = make_reference_checkpoint(tmp_path_factory.mktemp(request.param), request.param)
    merged = load_model(ref["path"], base=str(ref["base_dir"]), dtype="float64")
    inter = load_model(ref["path"], base=str(ref["base_dir"]), dtype="float64", lora_mode="interventions")
    return merged, inter, ref


def _records(records):
    return {(name, step): tensor for name, step, tensor in records}


@pytest.mark.parametrize("remote", [None, "local"])
def test_same_hidden_states_and_greedy_answers_as_merged(pair, remote):
    merged, inter, _ = pair
    assert isinstance(inter, LoraCodiModel) and inter.codi_config.extra["lora_mode"] == "interventions"
    assert inter._module.config.vocab_size == BASE_VOCAB  # the base vocabulary, no added rows
    layers = range(merged.num_layers + 1)
    hook = Capture(["hidden", "latent_input"], layers, merged.num_latents)
    prompts = merged.encode(QUESTIONS)  # left-padded: the pad row comes from the checkpoint
    want_tokens, want = run_loop(merged, prompts, [hook], max_new_tokens=MAX_NEW)
    got_tokens, got = run_loop(inter, inter.encode(QUESTIONS), [hook], max_new_tokens=MAX_NEW, remote=remote)
    want, got = _records(want), _records(got)
    assert set(want) == set(got) and len(want) == (merged.num_latents + 2) * len(layers) + merged.num_latents
    for key in want:
        assert_close_rel(got[key], want[key])
    assert got_tokens.tolist() == want_tokens.tolist()
    assert inter.answer(QUESTIONS, max_new_tokens=MAX_NEW) == merged.answer(QUESTIONS, max_new_tokens=MAX_NEW)


def test_reference_masking_and_added_token_logits(pair):
    """Unmasked latent calls attend to the pad rows; greedy answers over all V+3 logits, as merged."""
    merged, inter, _ = pair
    want, _ = run_loop(merged, merged.encode(QUESTIONS), max_new_tokens=MAX_NEW, masking="reference")
    session, _ = run_loop(merged, merged.encode(QUESTIONS), max_new_tokens=MAX_NEW, masking="reference",
                          remote="local")  # the prompt's positions count the padding there too
    got, _ = run_loop(inter, inter.encode(QUESTIONS), max_new_tokens=MAX_NEW, masking="reference", remote="local")
    assert got.tolist() == want.tolist() == session.tolist()

    class Logits:
        def sites(self, step):
            return ["output"]

        def visit(self, site, value, step, sink):
            sink.append(("logits", step, value.logits[:, -1].detach().clone()))

    _, want = run_loop(merged, merged.encode(QUESTIONS), [Logits()], max_new_tokens=2)
    _, got = run_loop(inter, inter.encode(QUESTIONS), [Logits()], max_new_tokens=2)
    for (_, _, w), (_, _, g) in zip(want, got):
        assert g.shape[-1] == BASE_VOCAB + 3
        assert_close_rel(g, w)


def test_latent_generate_is_refused_and_modes_are_checked(pair, tmp_path):
    _, inter, ref = pair
    with pytest.raises(TypeError, match="session executor"):
        inter.latent_generate(inter.encode(QUESTIONS[:1]))
    with pytest.raises(ValueError, match="lora_mode"):
        load_model("tiny", lora_mode="interventions")
    with pytest.raises(ValueError, match="converted"):
        load_model(make_converted(tmp_path / "conv"), lora_mode="interventions")
    with pytest.raises(ValueError, match="unknown lora_mode"):
        load_model(ref["path"], base=str(ref["base_dir"]), lora_mode="sideways")


class AddVector:
    """A hand-written steering StepHook: add `coefficient · vector` to the residual at `layer`, last position."""

    def __init__(self, layer: int, step: int, vector: torch.Tensor, coefficient: float) -> None:
        self.layer, self.step, self.vector, self.coefficient = layer, step, vector, coefficient

    def sites(self, step):
        return [f"layer{self.layer}"] if step == self.step else []

    def visit(self, site, value, step, sink):
        value[:, -1] += self.coefficient * self.vector.to(value.device, value.dtype)


def test_steering_and_capture_work_on_top(pair):
    merged, inter, _ = pair
    torch.manual_seed(0)
    vector = torch.randn(merged.hidden_size, dtype=torch.float64)
    capture = Capture(["hidden"], range(merged.num_layers + 1), merged.num_latents)
    plain_tokens, plain = run_loop(inter, inter.encode(QUESTIONS), [capture], max_new_tokens=MAX_NEW)
    zero_tokens, zero = run_loop(inter, inter.encode(QUESTIONS), [AddVector(1, 2, vector, 0.0), capture],
                                 max_new_tokens=MAX_NEW)
    assert zero_tokens.tolist() == plain_tokens.tolist()
    for key, value in _records(plain).items():
        torch.testing.assert_close(_records(zero)[key], value, rtol=0, atol=0)
    steer = [AddVector(1, 2, vector, 8.0), capture]
    want_tokens, want = run_loop(merged, merged.encode(QUESTIONS), steer, max_new_tokens=MAX_NEW)
    got_tokens, got = run_loop(inter, inter.encode(QUESTIONS), steer, max_new_tokens=MAX_NEW, remote="local")
    want, got = _records(want), _records(got)
    for key in want:
        assert_close_rel(got[key], want[key])
    assert got_tokens.tolist() == want_tokens.tolist()
    moved = got[("hidden/1", 3)] - _records(plain)[("hidden/1", 3)]
    assert float(moved.abs().max()) > 1e-3  # the steer reaches the next step


def test_capture_store_equals_merged(pair, tmp_path):
    merged, inter, _ = pair
    config = dict(limit=5, batch_size=3, max_new_tokens=4, variables=("hidden", "latent_input", "kv", "attention",
                                                                      "answer_pred", "correct"))
    run_capture(tmp_path / "merged.zarr", CaptureConfig(**config), codi=merged, progress=False)
    run_capture(tmp_path / "inter.zarr", CaptureConfig(**config, remote="local", lora_mode="interventions"),
                codi=inter, progress=False)
    want, got = open_store(tmp_path / "merged.zarr"), open_store(tmp_path / "inter.zarr")
    for name in ("hidden", "latent_input", "kv", "attention", "answer_pred"):
        a, b = np.asarray(want[name].values, dtype=np.float64), np.asarray(got[name].values, dtype=np.float64)
        assert a.shape == b.shape, name
        scale = np.nanmax(np.abs(a)) if np.isfinite(a).any() else 1.0
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale, equal_nan=True, err_msg=name)  # float32 store


def test_adapter_travels_once_per_session(pair):
    """One request per batch; its size is the adapter plus a little, whatever the number of LM calls."""
    _, inter, _ = pair
    model = inter.session_model("local")
    adapter_bytes = model.codi_adapter.nbytes
    sizes = {}
    for max_new in (1, 8):
        with count_requests() as log:
            run_loop(inter, inter.encode(QUESTIONS), max_new_tokens=max_new, remote="local")
        assert log.requests == 1
        sizes[max_new] = log.raw_bytes[0]
    steps_more = 7
    # the projection travels by value, not as a reference to a module of the server's model
    assert not any("_persistent_id" in m.__dict__ for m in model.codi_adapter.prj.modules())
    assert adapter_bytes <= sizes[1] < adapter_bytes + 200_000
    assert abs(sizes[8] - sizes[1]) < adapter_bytes / 4  # not once per trace (7 more traces)
    assert steps_more * adapter_bytes > sizes[8]


# -- the base weight check and target modules ---------------------------------------------------

def _save_base(directory, lm):
    """A 'hosted' base: the HF model (vocab V) with weights + tokenizer, as a local directory."""
    config = lm.config.__class__(**{**lm.config.to_dict(), "vocab_size": BASE_VOCAB})
    base = type(lm)(config).to(lm.dtype)
    state = {k: (v[:BASE_VOCAB] if v.shape[:1] == (BASE_VOCAB + 3,) else v) for k, v in lm.state_dict().items()}
    base.load_state_dict(state)
    base.save_pretrained(directory)
    word_tokenizer().save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_weight_check_accepts_the_base_and_refuses_another(tmp_path, family):
    ref = make_reference_checkpoint(tmp_path / "ckpt", family)
    good = _save_base(tmp_path / "good", ref["lm"])
    inter = load_model(ref["path"], base=str(good), lora_mode="interventions", dtype="float64")
    merged = load_model(ref["path"], base=str(ref["base_dir"]), dtype="float64")
    assert inter.answer(QUESTIONS, max_new_tokens=4) == merged.answer(QUESTIONS, max_new_tokens=4)
    inter.session_model("local")  # the serialised check passes too

    other = _save_base(tmp_path / "other", tiny_lm(family, seed=5))
    with pytest.raises(BaseMismatchError, match="not the base this CODI checkpoint was trained on") as err:
        load_model(ref["path"], base=str(other), lora_mode="interventions")
    assert "weight differs" in str(err.value)

    nudged_lm = tiny_lm(family, seed=0)  # the same base with one weight of the last LoRA module changed
    last = list(ref["lora"])[-1]
    with torch.no_grad():
        dict(nudged_lm.named_modules())[last].weight.view(-1)[7] += 0.5
    nudged = _save_base(tmp_path / "nudged", nudged_lm)
    with pytest.raises(BaseMismatchError, match=last.replace(".", r"\.") + r"\.weight differs"):
        load_model(ref["path"], base=str(nudged), lora_mode="interventions")


def test_bf16_checkpoint_on_fp32_hosted_base(tmp_path):
    """Released checkpoints store the base in bf16; the hosted fp32 base rounds to those values."""
    lm = tiny_lm("gpt2")
    torch.manual_seed(7)
    prj = build_projection(lm.config.hidden_size, 40)
    state, _ = reference_state_dict(lm, prj, "gpt2", rank=4, base_dtype=torch.bfloat16)
    (tmp_path / "ckpt").mkdir()
    torch.save(state, tmp_path / "ckpt" / "pytorch_model.bin")
    hosted = _save_base(tmp_path / "hosted", lm)  # float32, not rounded
    inter = load_model(tmp_path / "ckpt", base=str(hosted), lora_mode="interventions")
    assert inter.session_model("local").codi_adapter.rows.dtype == torch.float32


def test_missing_target_modules_are_refused_with_the_list(tmp_path):
    for family, renames in (("gpt2", {"transformer.h.1.mlp.c_fc": "transformer.h.9.mlp.c_fc"}),
                            ("llama", {"model.layers.0.self_attn.q_proj": "model.layers.0.self_attn.qkv_proj",
                                       "model.layers.1.mlp.up_proj": "model.layers.1.mlp.w3"})):
        ref = make_reference_checkpoint(tmp_path / family, family)
        state = {}
        for key, value in ref["state"].items():
            for old, new in renames.items():
                if key.startswith(PREFIX + old + ".lora_"):
                    key = key.replace(old, new)
            state[key] = value
        torch.save(state, ref["path"])
        with pytest.raises(CodiFormatError, match="lacks") as err:
            load_model(ref["path"], base=str(ref["base_dir"]), lora_mode="interventions")
        for new in renames.values():
            assert new in str(err.value)


def test_cli_eval_with_lora_mode_interventions(tmp_path, capsys):
    import json

    from nnsight_codi.cli import main

    ref = make_reference_checkpoint(tmp_path / "ckpt", "gpt2")
    common = ["--model", str(ref["path"]), "--base", str(ref["base_dir"]), "--dataset", "synthetic", "--limit", "5",
              "--batch-size", "3", "--max-new-tokens", "4", "--json"]
    outputs = {}
    for mode, extra in (("merged", []), ("interventions", ["--lora-mode", "interventions", "--remote", "local"])):
        assert main(["eval", *common, "--out", str(tmp_path / mode), *extra]) == 0
        capsys.readouterr()
        outputs[mode] = (tmp_path / mode / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["prediction_text"] for r in outputs["interventions"]] == \
        [json.loads(r)["prediction_text"] for r in outputs["merged"]]
    # a hosted run needs the base model's hub id: a local --base directory names none
    with pytest.raises(ValueError, match="hub id"):
        load_model(ref["path"], base=str(ref["base_dir"]), lora_mode="interventions").session_model(True)


def test_projection_travels_by_value_in_both_modes(pair):
    """nnsight tags an envoy child (`codi.prj` → "Module:model.prj") to be sent as a reference to the
    server's model, which has no projection: both session paths must ship a copy by value."""
    from nnsight.intervention.serialization import loads

    from nnsight_codi.tracing.session import plain_lm_model

    merged, inter, _ = pair
    inter.session_model("local")  # its weight check is a request of its own
    for codi in (merged, inter):
        with count_requests(keep=True) as log:
            run_loop(codi, codi.encode(QUESTIONS[:1]), max_new_tokens=1, remote="local")
        assert log.requests == 1
        persistent = plain_lm_model(codi, "local")._remoteable_persistent_objects()
        _, (_, _, variables) = loads(log.blobs[0], persistent)
        shipped = variables["project"]
        shipped = shipped.inner if hasattr(shipped, "inner") else shipped
        local = codi.prj._module
        assert shipped is not local
        for a, b in zip(shipped.parameters(), local.parameters()):
            torch.testing.assert_close(a.detach().to(b.dtype), b.detach())
