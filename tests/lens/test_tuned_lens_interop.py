"""Lenses move both ways between this project and the real tuned-lens package: same unembedding
hash (no warning), same read-outs; a lens is refused for another model but not for another dtype
of the same model; the lens directory holds tuned-lens's files (+ a sidecar) and no checkpoint."""

from __future__ import annotations

import json
import logging

import pytest
import torch

tuned_lens = pytest.importorskip("tuned_lens", reason="tuned-lens is not installed (pip install -e '.[test]')")
from tuned_lens.nn import TunedLens as TLTunedLens  # noqa: E402
from tuned_lens.nn import Unembed  # noqa: E402

from nnsight_codi.cli import main as cli_main  # noqa: E402
from nnsight_codi.lens.logit import final_norm  # noqa: E402
from nnsight_codi.lens.tuned import SIDECAR_NAME, TunedLens  # noqa: E402

MAX_DP = 1e-5  # float32: the two implementations agree to rounding


def _our_probs(model, lens: TunedLens, h: torch.Tensor, layer: int) -> torch.Tensor:
    lm = model._module
    with torch.no_grad():
        return torch.softmax(lm.get_output_embeddings()(final_norm(lm)(lens.transform(h, layer))).float(), -1)


def _hidden(d: int) -> torch.Tensor:
    return torch.randn(6, d, generator=torch.Generator().manual_seed(0)) * 4


def test_our_lens_loads_in_tuned_lens_without_warning(tiny, tiny_lens, caplog):
    config = json.loads((tiny_lens / "config.json").read_text())
    assert "nnsight_codi" not in config and (tiny_lens / SIDECAR_NAME).is_file()
    assert config["base_model_name_or_path"] == "tiny"
    assert not (tiny_lens / "checkpoint.pt").exists()
    unembed = Unembed(tiny._module)
    assert config["unembed_hash"] == unembed.unembedding_hash()
    with caplog.at_level(logging.WARNING):
        theirs = TLTunedLens.from_unembed_and_pretrained(unembed, str(tiny_lens))
    # tuned-lens warns through the root logger (hash mismatch, unknown config keys); other libraries'
    # own warnings (e.g. `kernels` under HF_HUB_OFFLINE) are not about the lens
    theirs_warned = [r for r in caplog.records
                     if r.levelno >= logging.WARNING and (r.name == "root" or r.name.startswith("tuned_lens"))]
    assert not theirs_warned, caplog.text
    ours = TunedLens.load(tiny_lens, model=tiny)
    h = _hidden(ours.config["d_model"])
    worst = 0.0
    for layer in range(ours.num_layers):
        with torch.no_grad():
            p_theirs = torch.softmax(theirs(h, layer).float(), -1)
        worst = max(worst, float((p_theirs - _our_probs(tiny, ours, h, layer)).abs().max()))
    assert worst <= MAX_DP


def test_tuned_lens_saved_lens_loads_here(tiny, tmp_path):
    theirs = TLTunedLens.from_model(tiny._module)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in theirs.layer_translators:
            t.weight.copy_(torch.randn(t.weight.shape, generator=g) * 0.05)
            t.bias.copy_(torch.randn(t.bias.shape, generator=g) * 0.05)
    theirs.save(tmp_path / "tl")
    ours = TunedLens.load(tmp_path / "tl", model=tiny)  # the hash check passes
    h = _hidden(ours.config["d_model"])
    worst = 0.0
    for layer in range(ours.num_layers):
        with torch.no_grad():
            p_theirs = torch.softmax(theirs(h, layer).float(), -1)
        worst = max(worst, float((p_theirs - _our_probs(tiny, ours, h, layer)).abs().max()))
    assert 0 < float(ours.layer_translators[0].weight.abs().sum())
    assert worst <= MAX_DP
    # and through the command line: `lens eval` accepts it (no sidecar: the default data mode)
    assert cli_main(["lens", "eval", "--lens", str(tmp_path / "tl"), "--limit", "4", "--json"]) == 0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_lens_accepted_for_another_dtype_refused_for_another_model(tiny, tiny_lens, dtype, tmp_path):
    from nnsight_codi.loading import load_model

    half = load_model("tiny", dtype=dtype)
    TunedLens.load(tiny_lens, model=half)  # no error
    assert Unembed(half._module).unembedding_hash() == json.loads((tiny_lens / "config.json").read_text())[
        "unembed_hash"]
    other = load_model("tiny")
    with torch.no_grad():
        other._module.get_output_embeddings().weight.mul_(1.5)  # same shapes, another unembedding
    with pytest.raises(ValueError, match="another model"):
        TunedLens.load(tiny_lens, model=other)


def test_tuned_lens_cli_spellings(tmp_path, capsys):
    out = tmp_path / "lens"
    assert cli_main(["lens", "train", "--model.name", "tiny", "--data", "latent:2", "--data.name", "synthetic",
                     "--limit", "6", "--num_steps", "3", "--tokens_per_step", "64", "--lr_scale", "0.5",
                     "--weight_decay", "0.01", "--momentum", "0.8", "--precision", "float32", "-o", str(out),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    meta = json.loads((out / SIDECAR_NAME).read_text())
    assert meta["train"]["lr_scale"] == 0.5 and meta["train"]["weight_decay"] == 0.01
    assert meta["train"]["momentum"] == 0.8 and meta["train"]["batch_size"] == 64
    assert sorted(p.name for p in out.iterdir()) == ["config.json", SIDECAR_NAME, "params.pt"]
    assert cli_main(["lens", "eval", "--model.name", "tiny", "-l", str(out), "--limit", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == "latent:2"
