"""An untied checkpoint keeps its own output head through convert/load; a missing or mis-shaped head is an error.

The reference ties the head only when the base config ties it (`tie_weights()` does nothing otherwise),
so a checkpoint on an untied base (Mistral, Qwen2, Llama-3-8B) carries `lm_head.weight` [V+3, d].
"""

from __future__ import annotations

import json

import pytest
import torch
from factories import BASE_VOCAB, PREFIX, reference_state_dict, tiny_lm, word_tokenizer
from safetensors.torch import load_file, save_file

from nnsight_codi.cli import main
from nnsight_codi.loading import load_model
from nnsight_codi.models.codi_config import CodiFormatError
from nnsight_codi.models.lora_checkpoint import BaseMismatchError
from nnsight_codi.models.projection import build_projection
from nnsight_codi.tracing.loop import run_loop

QUESTIONS = ["tom has 3 pens . he gets 4 more .", "how many pens ?"]
HEAD = PREFIX + "lm_head.weight"


def untied_checkpoint(directory, family: str, tied: bool = False) -> dict:
    """A reference-layout checkpoint whose base config unties (or ties) the head; the head has its own values."""
    lm = tiny_lm(family, seed=3)
    cfg = lm.config.to_dict() | {"tie_word_embeddings": tied}
    lm = type(lm)(type(lm.config)(**cfg)).eval()
    torch.manual_seed(5)
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    assert (lm.lm_head.weight is lm.get_input_embeddings().weight) == tied
    base = directory / "base"
    base.mkdir(parents=True)
    type(lm.config)(**(cfg | {"vocab_size": BASE_VOCAB})).save_pretrained(base)
    word_tokenizer().save_pretrained(base)
    prj = build_projection(lm.config.hidden_size, 40)
    state, lora = reference_state_dict(lm, prj, family, rank=4)
    path = directory / "pytorch_model.bin"
    torch.save(state, path)
    return {"path": path, "base": base, "state": state, "lm": lm}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_untied_head_round_trips_through_convert_and_load(tmp_path, family, capsys):
    ref = untied_checkpoint(tmp_path, family)
    head = ref["state"][HEAD]
    assert not torch.equal(head, ref["state"][next(k for k in ref["state"] if k.endswith(("wte.weight", "embed_tokens.weight")))])
    direct = load_model(ref["path"], base=str(ref["base"]))
    assert direct.codi_config.extra["tied_head"] is False
    assert torch.equal(direct._module.lm_head.weight, head)
    assert direct._module.lm_head.weight.data_ptr() != direct._module.get_input_embeddings().weight.data_ptr()

    dst = tmp_path / "converted"
    assert main(["convert", str(ref["path"]), str(dst), "--base", str(ref["base"])]) == 0
    capsys.readouterr()
    assert json.loads((dst / "config.json").read_text())["tie_word_embeddings"] is False
    assert json.loads((dst / "codi.json").read_text())["extra"]["tied_head"] is False
    converted = load_model(dst)
    assert torch.equal(converted._module.lm_head.weight, head)

    # logits are the checkpoint's own head applied to the final hidden state (not the embedding's)
    class Final:
        def sites(self, step):
            return ["output"] if step == direct.num_latents + 1 else []

        def visit(self, site, value, step, sink):
            sink.append(("logits", step, value.logits[:, -1].detach().clone()))

    tokens, records = run_loop(converted, converted.encode(QUESTIONS), [Final()], max_new_tokens=4)
    want, _ = run_loop(direct, direct.encode(QUESTIONS), max_new_tokens=4)
    assert tokens.tolist() == want.tolist()
    with converted.latent_generate(converted.encode(QUESTIONS), max_new_tokens=1, full_outputs=True) as tracer:
        for step in tracer.iter[direct.num_latents + 1: direct.num_latents + 2]:
            final = converted.output.hidden_states[-1][:, -1].save()
    torch.testing.assert_close(records[0][2], final @ head.T, rtol=1e-5, atol=1e-5)
    # the base + interventions path reads the same head rows
    inter = load_model(ref["path"], base=str(ref["base"]), lora_mode="interventions")
    got, _ = run_loop(inter, inter.encode(QUESTIONS), max_new_tokens=4)
    assert got.tolist() == want.tolist()


def test_tied_base_ignores_the_head_key_and_records_it(tmp_path):
    ref = untied_checkpoint(tmp_path, "llama", tied=True)
    codi = load_model(ref["path"], base=str(ref["base"]))
    assert codi.codi_config.extra["tied_head"] is True
    assert codi._module.lm_head.weight.data_ptr() == codi._module.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s.pop(HEAD), "missing keys.*lm_head.weight"),
    (lambda s: s.__setitem__(HEAD, s[HEAD][:-3]), "lm_head.weight: checkpoint .*expected"),
])
def test_missing_or_misshaped_head_is_an_error_naming_the_key(tmp_path, mutate, message):
    ref = untied_checkpoint(tmp_path, "gpt2")
    state = dict(ref["state"])
    mutate(state)
    torch.save(state, ref["path"])
    with pytest.raises(CodiFormatError, match=message):
        load_model(ref["path"], base=str(ref["base"]))


def test_converted_dir_with_missing_or_misshaped_head_is_refused(tmp_path, capsys):
    ref = untied_checkpoint(tmp_path, "gpt2")
    dst = tmp_path / "converted"
    assert main(["convert", str(ref["path"]), str(dst), "--base", str(ref["base"])]) == 0
    weights = load_file(str(dst / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if k != "lm_head.weight"}, str(dst / "model.safetensors"))
    with pytest.raises(CodiFormatError, match="missing keys: lm_head.weight"):
        load_model(dst)
    save_file(weights | {"lm_head.weight": weights["lm_head.weight"][:, :5].contiguous()}, str(dst / "model.safetensors"))
    with pytest.raises(CodiFormatError, match=r"mis-shaped keys: lm_head.weight"):
        load_model(dst)
    # codi.json and config.json must agree on tying
    save_file(weights, str(dst / "model.safetensors"))
    codi_json = json.loads((dst / "codi.json").read_text())
    codi_json["extra"]["tied_head"] = True
    (dst / "codi.json").write_text(json.dumps(codi_json))
    with pytest.raises(CodiFormatError, match="tied"):
        load_model(dst)
    capsys.readouterr()
    assert main(["eval", "--model", str(dst), "--limit", "2"]) == 2
    err = capsys.readouterr().err
    assert "tied" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_interventions_check_an_untied_base_head(tmp_path):
    """Base + interventions reads the head rows < V from the base: a base whose untied head is not the
    checkpoint's is refused (naming it), one whose head is the checkpoint's gives the merged answers."""
    ref = untied_checkpoint(tmp_path, "gpt2")
    lm = ref["lm"]
    base_lm = type(lm)(type(lm.config)(**(lm.config.to_dict() | {"vocab_size": BASE_VOCAB})))
    state = {k: v[:BASE_VOCAB] if k in ("transformer.wte.weight", "lm_head.weight") else v
             for k, v in lm.state_dict().items()}
    base_lm.load_state_dict(state)
    base_lm.save_pretrained(ref["base"])
    merged = load_model(ref["path"], base=str(ref["base"]))
    inter = load_model(ref["path"], base=str(ref["base"]), lora_mode="interventions")
    want, _ = run_loop(merged, merged.encode(QUESTIONS), max_new_tokens=4)
    got, _ = run_loop(inter, inter.encode(QUESTIONS), max_new_tokens=4)
    assert got.tolist() == want.tolist()
    with torch.no_grad():
        base_lm.lm_head.weight.add_(0.5)
    base_lm.save_pretrained(ref["base"])
    with pytest.raises(BaseMismatchError, match="lm_head.weight differs"):
        load_model(ref["path"], base=str(ref["base"]), lora_mode="interventions")
