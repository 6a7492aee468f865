"""`numerics="reference"` in bfloat16 equals a hand-written unmerged-LoRA bfloat16 forward.

The oracle does what the reference's loading does, without the package: the unmerged base model
(vocab V+3), `.to(torch.bfloat16)` on everything (parameters and buffers, Llama's rotary
`inv_freq` included), LoRA added by forward hooks in bf16 as peft computes it
(`W x + (x Aᵀ Bᵀ) · scale`), the projection in bf16, and the loop of `reference_impl`.
"""

from __future__ import annotations

import copy

import pytest
import torch
from factories import LatentInputs, make_converted, make_reference_checkpoint
from reference_impl import attach_lora, reference_run

from nnsight_codi.cli import main
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.loop import run_loop

QUESTIONS = ["tom has 3 pens . he gets 4 more .", "how many pens ?", "he loses 2 pens . the answer is"]
MAX_NEW = 6
BF16 = torch.bfloat16


def hand_model(ref: dict, cast_buffers: bool = True):
    """The reference's bf16 model by hand: `(lm, prj)` with LoRA hooks."""
    lm = copy.deepcopy(ref["lm"])
    if cast_buffers:
        lm = lm.to(BF16)
    else:  # parameters only: buffers (inv_freq) stay float32
        for p in lm.parameters():
            p.data = p.data.to(BF16)
    attach_lora(lm, {n: (a.to(BF16), b.to(BF16)) for n, (a, b) in ref["lora"].items()}, ref["scale"])
    return lm.eval(), copy.deepcopy(ref["prj"]).to(BF16).eval()


def hand_answers(ref: dict, codi, cast_buffers: bool = True):
    lm, prj = hand_model(ref, cast_buffers)
    cfg = codi.codi_config
    answers, latents = [], []
    for question in QUESTIONS:
        prompt = codi.tokenizer(question)["input_ids"]
        answer, _, zs = reference_run(lm, prj, prompt, cfg.bot_id, cfg.eot_id, cfg.eos_id, codi.num_latents, MAX_NEW)
        answers.append(answer)
        latents.append(torch.stack([z[0] for z in zs]))
    return answers, latents


def our_answers(codi):
    answers, latents = [], []
    eos = codi.codi_config.eos_id
    for question in QUESTIONS:  # batch size 1, as the oracle
        tokens, records = run_loop(codi, codi.encode([question]), [LatentInputs(codi.num_latents, "z")],
                                   max_new_tokens=MAX_NEW)
        row = tokens[0].tolist()
        answers.append(row[: row.index(eos) + 1] if eos in row else row)
        latents.append(torch.stack([r[2][0] for r in records]))
    return answers, latents


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def ref(request, tmp_path_factory):
    return make_reference_checkpoint(tmp_path_factory.mktemp(request.param), request.param)


def test_bf16_reference_numerics_equal_the_hand_written_unmerged_bf16_forward(ref):
    codi = load_model(ref["path"], base=str(ref["base_dir"]), dtype="bfloat16", numerics="reference")
    assert codi.dtype == BF16 and codi.codi_config.extra["numerics"] == "reference"
    want, want_z = hand_answers(ref, codi)
    got, got_z = our_answers(codi)
    assert got == want
    for g, w in zip(got_z, want_z):
        assert g.dtype == BF16
        torch.testing.assert_close(g, w, atol=0, rtol=0)  # the same bf16 operations, bit for bit


def test_merged_bf16_is_another_computation(ref):
    """What the test above distinguishes: the merged model in bf16 feeds other latents (and for Llama,
    float32 rotary frequencies give other latents too), so that test can fail."""
    codi = load_model(ref["path"], base=str(ref["base_dir"]), dtype="bfloat16")
    _, want_z = hand_answers(ref, codi)
    _, merged_z = our_answers(codi)
    assert any(not torch.equal(m, w) for m, w in zip(merged_z, want_z))
    if ref["family"] == "llama":
        ours = load_model(ref["path"], base=str(ref["base_dir"]), dtype="bfloat16", numerics="reference")
        assert ours._module.model.rotary_emb.inv_freq.dtype == BF16
        plain = load_model(ref["path"], base=str(ref["base_dir"]), dtype="bfloat16", lora_mode="interventions")
        assert plain._module.model.rotary_emb.inv_freq.dtype == torch.float32
        _, fp32_rope_z = hand_answers(ref, codi, cast_buffers=False)
        assert any(not torch.equal(a, b) for a, b in zip(fp32_rope_z, want_z))


def test_numerics_errors(tmp_path, ref, capsys):
    with pytest.raises(ValueError, match="unknown numerics"):
        load_model(ref["path"], base=str(ref["base_dir"]), numerics="exactish")
    with pytest.raises(ValueError, match="needs a reference CODI checkpoint"):
        load_model("tiny", numerics="reference")
    with pytest.raises(ValueError, match="needs a reference CODI checkpoint"):
        load_model(make_converted(tmp_path / "conv"), numerics="reference")
    assert main(["eval", "--model", "tiny", "--numerics", "reference", "--limit", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a reference CODI checkpoint" in err and "Traceback" not in err
