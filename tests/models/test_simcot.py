"""SIM-CoT CODI releases load in every layout (weights checked key by key) and refuse malformed ones in one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from factories import make_reference_checkpoint
from simcot_factory import LAYOUTS, make_release, release_state, write_release

from nnsight_codi.loading import load_model
from nnsight_codi.models.codi_config import CodiFormatError
from nnsight_codi.models.simcot import SIMCOT_RELEASES, read_release, release_files, simcot_entry

QUESTIONS = ["tom has 3 pens . he gets 4 more .", "how many pens ?"]


def _load(r, **kw):
    extra = {"decoder_base": str(r["decoder_base"])} if "decoder_base" in r else {}
    return load_model(str(r["path"]), base=str(r["base_dir"]), **extra, **kw)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_the_same_weights(tmp_path, layout):
    r = make_release(tmp_path, layout)
    codi = _load(r)
    # the CODI part equals the same state loaded as a plain reference CODI checkpoint
    plain = make_reference_checkpoint(tmp_path / "plain")  # same seed: the same codi.* / prj.* tensors
    ref = load_model(plain["path"], base=str(plain["base_dir"]))
    for (k, a), (k2, b) in zip(codi._module.state_dict().items(), ref._module.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert codi.answer(QUESTIONS, max_new_tokens=6) == ref.answer(QUESTIONS, max_new_tokens=6)
    # the decoder is the release's decoder.* tensors, exactly
    dec = codi.step_decoder
    for key, value in r["decoder"].state_dict().items():
        assert torch.equal(dec.lm.state_dict()[key], value), key
    assert dec.pj_in is None and not dec.has_pj_out
    assert dec.eos_id == 0 and codi.codi_config.extra["simcot"]["files"] == (1 if layout in ("bin", "safetensors") else 3)


def test_pj_in_pj_out_and_an_absent_tied_head(tmp_path):
    r = make_release(tmp_path, "sharded-safetensors", pj_in=True, pj_out=True, drop_tied=True)
    dec = _load(r).step_decoder
    assert torch.equal(dec.pj_in.weight, r["pj_in"].weight) and torch.equal(dec.pj_in.bias, r["pj_in"].bias)
    assert torch.equal(dec.pj_out_u, r["pj_out"][0]) and torch.equal(dec.pj_out_v, r["pj_out"][1])
    assert dec.lm.config.hidden_size == 48
    # the logits map: decoder logits [V] @ U @ V
    vec = torch.randn(1, 1, 32)
    emb = dec.pj_in(vec)
    logits = r["decoder"](inputs_embeds=emb).logits[0, -1] @ r["pj_out"][0] @ r["pj_out"][1]
    assert dec.decode(vec, max_new_tokens=1)[0] == [int(logits.argmax())]


def test_sharded_index_and_shards_agree(tmp_path):
    parts = release_state()
    path = write_release(tmp_path / "r", parts["state"], "sharded-bin")
    assert len(release_files(path)) == 3
    state = read_release(path)
    assert set(state) == set(parts["state"]) and all(torch.equal(state[k], parts["state"][k]) for k in state)


def _cli_error(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnsight_codi", "eval", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("damage", ["missing-shard", "index-names-lost-key", "wrong-key", "shape", "no-decoder",
                                    "incomplete-noindex", "bad-pj-in"])
def test_malformed_releases_fail_in_one_line(tmp_path, damage):
    parts = release_state(pj_in=damage == "bad-pj-in")
    state = dict(parts["state"])
    layout = "sharded-safetensors"
    if damage == "wrong-key":
        state["decoder_extra.weight"] = torch.zeros(2)
    elif damage == "shape":
        state["decoder.transformer.h.0.ln_1.weight"] = torch.zeros(7)
    elif damage == "no-decoder":
        state = {k: v for k, v in state.items() if not k.startswith("decoder.")}
    elif damage == "incomplete-noindex":
        layout = "sharded-noindex"
    elif damage == "bad-pj-in":
        state["pj_in.weight"] = state["pj_in.weight"][:, :5]
    path = write_release(tmp_path / "r", state, layout)
    if damage == "missing-shard":
        (path / "model-00002-of-00003.safetensors").unlink()
    elif damage == "incomplete-noindex":
        (path / "model-00003-of-00003.safetensors").unlink()
    elif damage == "index-names-lost-key":
        index = path / "model.safetensors.index.json"
        data = json.loads(index.read_text())
        data["weight_map"]["decoder.ghost.weight"] = "model-00001-of-00003.safetensors"
        index.write_text(json.dumps(data))
    base = tmp_path / "base"
    from factories import make_base_dir

    make_base_dir(base)
    expected = {"missing-shard": "shard(s) missing: model-00002-of-00003", "index-names-lost-key": "decoder.ghost.weight",
                "wrong-key": "decoder_extra.weight", "shape": "decoder.transformer.h.0.ln_1.weight",
                "no-decoder": "no 'decoder.*' keys", "incomplete-noindex": "model-00003-of-00003",
                "bad-pj-in": "pj_in must be a Linear"}[damage]
    if damage == "bad-pj-in":
        (base.parent / "dec").mkdir()
        parts["decoder"].config.save_pretrained(base.parent / "dec")
        with pytest.raises(CodiFormatError, match=re.escape(expected)):
            load_model(str(path), base=str(base), decoder_base=str(base.parent / "dec"))
        return
    with pytest.raises(CodiFormatError, match=re.escape(expected)) as err:
        load_model(str(path), base=str(base))
    assert "\n" not in str(err.value)
    if damage == "missing-shard":  # the CLI prints it as one line, exit status non-zero, no traceback
        done = _cli_error(["--model", str(path), "--base", str(base), "--limit", "1"])
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr


def test_known_releases_and_offline_hub_error(monkeypatch):
    assert simcot_entry("internlm/SIM_COT-LLaMA3-CODI-8B").base == "meta-llama/Llama-3.1-8B-Instruct"
    assert {e.family for e in SIMCOT_RELEASES.values()} == {"gpt2", "llama"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from nnsight_codi.models.model_sources import ModelSourceError

    with pytest.raises(ModelSourceError, match="cannot download internlm/SIM_COT-GPT2-CODI"):
        load_model("internlm/SIM_COT-GPT2-CODI")
