"""Coconut: loading both checkpoint layouts, and answers equal to facebookresearch/coconut's own `generate`.

The recorded answers (`fixtures/coconut/reference_<kind>.json`) come from running the reference code as
written on checkpoints `coconut_fixtures.fabricate` makes (see that module for how).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coconut_fixtures import KINDS, LATENT_TOKENS, MAX_NEW_TOKENS, QUESTIONS, checksum, fabricate, reference  # noqa: E402

from nnsight_codi.loading import load_model  # noqa: E402
from nnsight_codi.models.codi_config import CodiFormatError  # noqa: E402
from nnsight_codi.tracing.loop import answer_ids, run_loop  # noqa: E402


@pytest.fixture(scope="module", params=KINDS)
def fabricated(request, tmp_path_factory):
    kind = request.param
    base, ckpt = fabricate(kind, tmp_path_factory.mktemp(f"coconut-{kind}"))
    return kind, base, ckpt


def test_fabricated_checkpoint_is_the_recorded_one(fabricated):
    kind, _, ckpt = fabricated
    ref = reference(kind)
    state = torch.load(ckpt, weights_only=True)
    assert sorted(state) == ref["keys"]  # exactly the keys the reference wrapper's state_dict has
    assert checksum(state) == pytest.approx(ref["checksum"], rel=1e-12)


@pytest.mark.parametrize("batch_size", [1, 6])
def test_answers_equal_reference_generate(fabricated, batch_size):
    """Token for token, every question, K in 0, 1, 3, one at a time and batched (exact masking, KV cache)."""
    kind, base, ckpt = fabricated
    ref = reference(kind)
    model = load_model(ckpt, base=str(base))
    cfg = model.codi_config
    assert (cfg.bot_id, cfg.eot_id, cfg.latent_id, cfg.eos_id) == tuple(ref["ids"][k] for k in ("start", "end", "latent", "eos"))
    assert cfg.latent_family == "coconut"
    by_k: dict[int, list[dict]] = {}
    for run in ref["runs"]:
        by_k.setdefault(run["num_latents"], []).append(run)
    matched = 0
    for k, runs in by_k.items():
        assert [r["question"] for r in runs] == QUESTIONS
        for start in range(0, len(QUESTIONS), batch_size):
            chunk = runs[start:start + batch_size]
            prompts = model.encode([r["question"] for r in chunk])
            for row, r in enumerate(chunk):
                real = prompts.input_ids[row][prompts.attention_mask[row].bool()].tolist()
                assert real == r["question_ids"] + [ref["ids"]["start"]]
            tokens = model.latent_generate(prompts, num_latents=k, max_new_tokens=MAX_NEW_TOKENS)
            for row, r in enumerate(chunk):
                ours = answer_ids(tokens[row].tolist(), cfg.eos_id, model.family_rules.eos_stops_from)
                assert ours == r["answer_ids"], (kind, k, r["question"])
                matched += 1
    assert matched == len(ref["runs"])


def test_session_executor_equals_reference(fabricated):
    """The NDIF-shaped executor (`remote="local"`) gives the reference's answers too."""
    kind, base, ckpt = fabricated
    ref = reference(kind)
    model = load_model(ckpt, base=str(base))
    runs = [r for r in ref["runs"] if r["num_latents"] == 3]
    tokens, _ = run_loop(model, model.encode([r["question"] for r in runs]), num_latents=3,
                         max_new_tokens=MAX_NEW_TOKENS, remote="local")
    for row, r in enumerate(runs):
        assert answer_ids(tokens[row].tolist(), model.codi_config.eos_id, 1) == r["answer_ids"]


# -- malformed checkpoints: one-line errors --------------------------------------------------------------

def _variant(ckpt: Path, tmp_path: Path, edit) -> Path:
    state = torch.load(ckpt, weights_only=True)
    edit(state)
    out = tmp_path / "checkpoint_9"
    torch.save(state, out)
    return out


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("embedding.weight"), "missing key embedding.weight"),
    (lambda s: s.pop(next(k for k in sorted(s) if ".h.1." in k or "layers.1." in k)), "missing keys: base_causallm."),
    (lambda s: s.__setitem__("base_causallm.extra.weight", torch.zeros(2)), "unexpected keys: base_causallm.extra.weight"),
    (lambda s: s.__setitem__("prj.1.weight", torch.zeros(2)), "unexpected keys: prj.1.weight"),
    (lambda s: s.__setitem__("embedding.weight", s["embedding.weight"] + 1), "differs from the LM's own input embedding"),
    (lambda s: s.__setitem__("embedding.weight", s["embedding.weight"][:-1]), "token rows"),
])
def test_malformed_checkpoints_fail_in_one_line(fabricated, tmp_path, edit, message):
    _, base, ckpt = fabricated
    bad = _variant(ckpt, tmp_path, edit)
    with pytest.raises(CodiFormatError) as err:
        load_model(bad, base=str(base))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_base_and_wrong_base(fabricated, tmp_path):
    kind, base, ckpt = fabricated
    with pytest.raises(CodiFormatError, match="pass its base model"):
        load_model(ckpt)
    other = fabricate("llama" if kind == "gpt2" else "gpt2", tmp_path / "other")[0]
    with pytest.raises(CodiFormatError, match="wrong --base"):
        load_model(ckpt, base=str(other))


def test_sim_cot_release_layout(tmp_path):
    """SIM-CoT's release: `checkpoint_28` with a step decoder (`expainable_llm.*`, base vocabulary), a 0-byte
    config.json and no tokenizer: loads from the directory with `--base`, answers as the plain Coconut does."""
    base, ckpt = fabricate("gpt2", tmp_path / "src")
    state = torch.load(ckpt, weights_only=True)
    vocab = len(json.loads((base / "tokenizer.json").read_text())["model"]["vocab"])
    for key, value in list(state.items()):
        if key.startswith("base_causallm."):
            decoder = value[:vocab] if value.shape[0] == vocab + len(LATENT_TOKENS) and value.ndim == 2 else value
            state["expainable_llm." + key[len("base_causallm."):]] = decoder.clone()
    release = tmp_path / "release"
    release.mkdir()
    torch.save(state, release / "checkpoint_28")
    (release / "config.json").write_bytes(b"")
    model = load_model(release, base=str(base))
    assert model.codi_config.extra["layout"] == "sim-cot" and model.codi_config.extra["step_decoder_keys"] > 0
    plain = load_model(ckpt, base=str(base))
    prompts = model.encode(QUESTIONS[:3])
    assert torch.equal(model.latent_generate(prompts, num_latents=2, max_new_tokens=6),
                       plain.latent_generate(plain.encode(QUESTIONS[:3]), num_latents=2, max_new_tokens=6))
    (release / "config.json").write_text("{not json")
    with pytest.raises(CodiFormatError, match="not valid JSON"):
        load_model(release, base=str(base))
