"""Reference-layout CODI checkpoints load, merge LoRA correctly, and run like an independent loop."""

from __future__ import annotations

import nnsight
import pytest
import torch
from factories import make_reference_checkpoint
from reference_impl import attach_lora, reference_run

from nnsight_codi.loading import load_model
from nnsight_codi.models.checkpoint import convert_reference_checkpoint
from nnsight_codi.models.codi_config import CodiFormatError
from nnsight_codi.models.converted import save_converted

QUESTIONS = ["tom has 3 pens . he gets 4 more .", "how many pens ?", "he loses 2 pens . the answer is"]
# Both sides run in float64: merged vs unmerged LoRA changes the op order, and this random model is
# chaotic enough (activations O(100), prj feedback) that float32 rounding grows to ~1e-4 relative.
REL_TOL = 1e-9


def assert_close_rel(actual, expected, rel=REL_TOL):
    """max |actual - expected| <= rel · max |expected|."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, atol=rel * scale, rtol=0)


def _block(codi, layer):
    return codi.transformer.h[layer] if hasattr(codi._module, "transformer") else codi.model.layers[layer]


@pytest.mark.parametrize("family,fmt", [("gpt2", "bin"), ("llama", "safetensors")])
def test_hidden_states_and_answers_match_independent_loop(tmp_path, family, fmt):
    ref = make_reference_checkpoint(tmp_path, family, fmt=fmt)
    codi = load_model(ref["path"], base=str(ref["base_dir"]), dtype="float64")
    cfg = codi.codi_config
    ref["lm"].double(), ref["prj"].double()
    ref["lora"] = {name: (a.double(), b.double()) for name, (a, b) in ref["lora"].items()}
    assert (cfg.pad_id, cfg.bot_id, cfg.eot_id) == (64, 65, 66)
    num_latents, max_new = 3, 6
    attach_lora(ref["lm"], ref["lora"], ref["scale"])
    n_layers = codi.num_layers
    for question in QUESTIONS:
        prompt = codi.tokenizer(question)["input_ids"]
        answer, hidden, latents = reference_run(ref["lm"], ref["prj"], prompt, cfg.bot_id, cfg.eot_id, cfg.eos_id,
                                                num_latents, max_new)
        steps = len(hidden)
        with codi.latent_generate(codi.encode([question]), num_latents=num_latents, max_new_tokens=max_new) as tracer:
            traced = nnsight.save([])
            fed = nnsight.save([])
            for step in tracer.iter[:steps]:
                fed.append(codi.step_input.output[:, -1].clone())
                traced.append([_block(codi, layer).output[:, -1].clone() for layer in range(n_layers)])
            tokens = tracer.result.save()
        assert len(traced) == steps
        for step in range(steps):
            for layer in range(n_layers):
                assert_close_rel(traced[step][layer], hidden[step][layer])
        for k in range(num_latents):
            assert_close_rel(fed[k + 1], latents[k])
        ours = tokens[0].tolist()
        assert ours[: len(answer)] == answer


def test_lora_merge_uses_conv1d_orientation_and_scale(tmp_path):
    ref = make_reference_checkpoint(tmp_path, "gpt2", rank=4, alpha=8.0)
    lm, _, _, _ = convert_reference_checkpoint(ref["path"], ref["base_dir"], lora_alpha=8.0)
    a, b = ref["lora"]["transformer.h.0.attn.c_attn"]
    base = ref["state"]["codi.base_model.model.transformer.h.0.attn.c_attn.base_layer.weight"]
    expected = base + (b @ a).T * (8.0 / 4)
    torch.testing.assert_close(lm.transformer.h[0].attn.c_attn.weight, expected)
    assert lm.lm_head.weight is lm.transformer.wte.weight


def test_converted_directory_round_trip(tmp_path):
    ref = make_reference_checkpoint(tmp_path / "ckpt", "gpt2")
    lm, tok, prj, cfg = convert_reference_checkpoint(ref["path"], ref["base_dir"])
    out = save_converted(tmp_path / "converted", lm, tok, prj, cfg)
    direct = load_model(ref["path"], base=str(ref["base_dir"]))
    reloaded = load_model(out)
    assert reloaded.codi_config == direct.codi_config
    assert reloaded.answer(QUESTIONS, max_new_tokens=5) == direct.answer(QUESTIONS, max_new_tokens=5)


def _corrupt(tmp_path, mutate):
    ref = make_reference_checkpoint(tmp_path, "gpt2")
    state = dict(ref["state"])
    mutate(state)
    torch.save(state, ref["path"])
    return ref


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s.pop("prj.3.weight"), "prj.3.weight"),
    (lambda s: s.pop("codi.base_model.model.transformer.h.1.mlp.c_fc.lora_A.default.weight"), "h.1.mlp.c_fc.lora_A"),
    (lambda s: s.__setitem__("codi.base_model.model.transformer.h.0.ln_1.weight", torch.ones(7)), "ln_1.weight"),
    (lambda s: s.__setitem__("codi.base_model.model.transformer.extra.weight", torch.ones(3)), "unexpected keys"),
    (lambda s: s.__setitem__("prj.9.weight", torch.ones(3)), "prj.9.weight"),
])
def test_corrupt_checkpoints_raise_clear_errors(tmp_path, mutate, message):
    ref = _corrupt(tmp_path, mutate)
    with pytest.raises(CodiFormatError, match=message.replace(".", r"\.")):
        load_model(ref["path"], base=str(ref["base_dir"]))


def test_truncated_file_and_unknown_architecture(tmp_path):
    ref = make_reference_checkpoint(tmp_path, "gpt2")
    data = ref["path"].read_bytes()
    ref["path"].write_bytes(data[: len(data) // 2])
    with pytest.raises(CodiFormatError, match="cannot read checkpoint"):
        load_model(ref["path"], base=str(ref["base_dir"]))
    ref = make_reference_checkpoint(tmp_path / "b", "gpt2")
    cfg_file = ref["base_dir"] / "config.json"
    cfg_file.write_text(cfg_file.read_text().replace('"model_type": "gpt2"', '"model_type": "bert"'))
    with pytest.raises((CodiFormatError, ValueError), match="bert"):
        load_model(ref["path"], base=str(ref["base_dir"]))


def test_missing_base_and_unknown_model_are_clear(tmp_path):
    ref = make_reference_checkpoint(tmp_path, "gpt2")
    with pytest.raises(CodiFormatError, match="needs its base model"):
        load_model(ref["path"])
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no-such-model")
