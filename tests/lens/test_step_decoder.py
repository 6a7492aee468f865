"""The step-decoder lens: parity with SIM-CoT's own code (recorded), an independent hand-written decode,
batched = one at a time, the capture store's `step_text` / `step_ids`, and the dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from reference_impl import attach_lora, reference_run
from simcot_factory import make_release

from nnsight_codi.lens.step_decoder import latent_steps
from nnsight_codi.loading import load_model

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "simcot_codi_reference.json").read_text())
CASES = {"gpt2-plain": dict(family="gpt2"), "llama-plain": dict(family="llama"), "gpt2-pj": dict(family="gpt2", pj_in=True)}


def _load(r, dtype="float64"):
    extra = {"decoder_base": str(r["decoder_base"])} if "decoder_base" in r else {}
    return load_model(str(r["path"]), base=str(r["base_dir"]), dtype=dtype, **extra)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_parity_with_simcot_reference_decoding(tmp_path, case, dtype):
    """Token ids equal those SIM-CoT's code produced on the same fabricated release (every step, every question)."""
    rec = FIXTURE["cases"][case]
    r = make_release(tmp_path, "sharded-safetensors" if case == "llama-plain" else "bin", **CASES[case])
    assert r["digest"] == rec["digest"], "the factory no longer builds the weights the reference ran on"
    codi = _load(r, dtype)
    k = FIXTURE["num_latents"]
    questions = [ex["question"] for ex in rec["examples"]]
    out = latent_steps(codi, questions, num_latents=k, max_new_tokens=FIXTURE["max_step_tokens"])
    for i, ex in enumerate(rec["examples"]):
        assert codi.prompt_ids(ex["question"]) == ex["prompt"]
        assert out.ids[i] == ex["steps"], (case, i)
        answer = codi.latent_generate(codi.encode([ex["question"]]), num_latents=k,
                                      max_new_tokens=FIXTURE["max_answer_tokens"])[0].tolist()
        assert answer == ex["answer"]


def _hand_decode(decoder_lm, embed, vector, eos, max_new, pj_in=None):
    """Full recompute each token, no KV cache: [vector, E[ids]] → argmax, until eos."""
    ids: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            x = torch.cat([vector.reshape(1, 1, -1), embed[torch.tensor(ids, dtype=torch.long)].reshape(1, len(ids), embed.shape[1])], 1)
            if pj_in is not None:
                x = pj_in(x)
            nxt = int(decoder_lm(inputs_embeds=x).logits[0, -1].argmax())
            ids.append(nxt)
            if nxt == eos:
                break
    return ids


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_against_an_independent_decode(tmp_path, family):
    r = make_release(tmp_path, "safetensors", family=family)
    codi = _load(r)
    lm, prj = r["lm"].double(), r["prj"].double()
    attach_lora(lm, {n: (a.double(), b.double()) for n, (a, b) in r["lora"].items()}, r["scale"])
    dec = r["decoder"].double()
    embed = lm.get_input_embeddings().weight.detach()
    k, cfg = 3, codi.codi_config
    question = "tom has 3 pens . he gets 4 more ."
    prompt = codi.tokenizer(question)["input_ids"]
    # K+1 latents of the independent loop: the last is prj(h) of latent K, the vector latent K produces
    _, _, latents = reference_run(lm, prj, prompt, cfg.bot_id, cfg.eot_id, cfg.eos_id, k + 1, 1)
    out = latent_steps(codi, [question], num_latents=k, max_new_tokens=10)
    for s in range(k + 1):
        torch.testing.assert_close(out.vectors[0, s], latents[s][0], rtol=1e-9, atol=1e-9)
        assert out.ids[0][s] == _hand_decode(dec, embed, latents[s][0], cfg.eos_id, 10)
    cut = [row[: row.index(cfg.eos_id)] if cfg.eos_id in row else row for row in out.ids[0]]
    assert out.texts[0] == [codi.tokenizer.decode(row, skip_special_tokens=True) for row in cut]


def test_batched_equals_one_at_a_time(tmp_path):
    r = make_release(tmp_path, "bin")
    codi = _load(r, "float64")  # float32 padding changes the last bits, which this random model amplifies
    questions = ["tom has 3 pens . he gets 4 more .", "how many pens ?", "he loses 2 pens . the answer is 7"]
    batched = latent_steps(codi, questions, num_latents=3, max_new_tokens=10)
    for i, q in enumerate(questions):
        alone = latent_steps(codi, [q], num_latents=3, max_new_tokens=10)
        assert alone.ids[0] == batched.ids[i] and alone.texts[0] == batched.texts[i]
        torch.testing.assert_close(alone.vectors[0], batched.vectors[i], rtol=1e-9, atol=1e-9)


def test_capture_store_and_dashboard(tmp_path):
    from nnsight_codi.activation_capture import CaptureConfig, run_capture
    from nnsight_codi.dashboard.builder import page_data, write_dashboard
    from nnsight_codi.store import open_store

    r = make_release(tmp_path, "sharded-bin")
    codi = _load(r, "float32")
    data_file = tmp_path / "q.jsonl"
    rows = [("tom has 3 pens . he gets 4 more .", "7"), ("how many pens ?", "3"), ("he loses 2 pens .", "1"),
            ("the answer is 5", "5")]
    data_file.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in rows))
    cfg = CaptureConfig(model=str(r["path"]), dataset=str(data_file), limit=4, batch_size=3,
                        variables=("step_text", "step_ids", "correct"), num_latents=3, step_tokens=9, max_new_tokens=6)
    run_capture(tmp_path / "s.zarr", cfg, codi=codi, progress=False)
    ds = open_store(tmp_path / "s.zarr")
    assert ds["step_text"].dims == ("example", "step") and ds.sizes["step_token"] == 9
    questions = [str(q) for q in ds["question"].values]
    out = latent_steps(codi, questions, num_latents=3, max_new_tokens=9)
    for i in range(len(questions)):
        assert [str(t) for t in ds["step_text"].values[i]] == out.texts[i] + [""]
        for s, row in enumerate(out.ids[i]):
            stored = [int(t) for t in ds["step_ids"].values[i, s] if t >= 0]
            assert stored == row
        assert all(int(t) == -1 for t in ds["step_ids"].values[i, -1])  # eot: nothing decoded
    data = page_data(ds)
    assert [data["strings"][j] for j in data["examples"][0]["d"]] == out.texts[0] + [""]
    html = Path(write_dashboard(ds, tmp_path / "dash")["path"]).read_text()
    assert "Step decoder" in html and '"d":' in html


COCONUT = json.loads((Path(__file__).parent / "fixtures" / "simcot_coconut_reference.json").read_text())


@pytest.mark.parametrize("mode", ["plain", "prompt"])
def test_coconut_variant_parity_with_simcot_visualize(tmp_path, mode):
    """SIM-CoT's Coconut release: groups of c_thought=2 fed vectors (+ "Step k of the solution" when
    w_prompt), positions from 1, decoded greedily; ids equal SIM-CoT's own decoding loop's."""
    from simcot_factory import make_coconut_release

    r = make_coconut_release(tmp_path, "gpt2")
    assert r["digest"] == COCONUT["digest"], "the factory no longer builds the weights the reference ran on"
    model = load_model(str(r["path"]), base=str(r["base_dir"]), dtype="float64")
    dec = model.step_decoder
    assert dec.variant == "coconut" and dec.group == 2 and dec.position_offset == 1
    dec.prefix = mode == "prompt"
    for row in COCONUT["modes"][mode]:
        k = row["num_latents"]
        out = latent_steps(model, [row["question"]], num_latents=k, max_new_tokens=200)
        assert out.ids[0] == row["groups"], (row["question"], k)
        assert out.steps == [min(g + 1, k - 1) for g in range(0, k, 2)]
        answer = model.latent_generate(model.encode([row["question"]]), num_latents=k, max_new_tokens=4)[0].tolist()
        assert answer == row["answer"]
