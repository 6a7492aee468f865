"""The `nnsight-codi` lm-eval model against lm-eval's own `hf` model (HFLM), on a tiny random GPT-2
with a byte-level BPE tokenizer trained on GSM8K text (both built here): the same loglikelihoods
(≤ 1e-4) and `is_greedy`, rolling loglikelihoods over several windows, greedy generations; lm-eval's
registry still resolves `hf` after importing the harness; the CLI default device falls back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bpe_tokenizers import byte_level_bpe, gsm8k_texts  # noqa: E402

pytest.importorskip("accelerate", reason="lm-eval's hf model needs accelerate (pip install -e '.[test]')")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402

from nnsight_codi.harness import NnsightCodiLM  # noqa: E402

TOL = 1e-4
CONTEXT = 48  # n_positions: short, so rolling loglikelihoods span several windows


def make_bpe_gpt2(out: Path) -> Path:
    """A tiny random GPT-2 (2 layers, width 32, context CONTEXT) with the GSM8K byte-level BPE, saved to `out`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = byte_level_bpe(vocab_size=1024)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=len(tok), n_positions=CONTEXT,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    lm = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)  # peaked distributions: greedy and is_greedy mean something
    lm.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    return make_bpe_gpt2(tmp_path_factory.mktemp("bpe-gpt2"))


@pytest.fixture(scope="module")
def models(gpt2_dir):
    hf = HFLM(pretrained=str(gpt2_dir), device="cpu", dtype="float32", batch_size=4)
    ours = NnsightCodiLM(model=str(gpt2_dir), device="cpu", batch_size=3, progress=False)
    return hf, ours


def _requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


def _pairs() -> list[tuple[str, str]]:
    """32 (context, continuation) pairs cut from GSM8K questions where BPE merges across the cut:
    trailing spaces on the context, continuations without a leading space, numbers split
    mid-number, an empty context."""
    texts = gsm8k_texts("test", limit=20)[::2]
    pairs = []
    for q in texts:
        words = q.split(" ")
        k = max(1, len(words) // 3)
        head, tail = " ".join(words[:k]), " ".join(words[k:k + 4])
        pairs.append((head + " ", tail))            # the space moves into the continuation
        pairs.append((head, " " + tail))
        digits = next((w for w in words if any(c.isdigit() for c in w) and len(w) > 1), "1234")
        pairs.append((head + " " + digits[:1], digits[1:]))  # a number cut in two
    pairs.insert(0, ("", texts[0].split(" ")[0]))
    pairs.insert(1, ("", " " + texts[1].split(" ")[0]))
    return pairs


def test_loglikelihood_equals_hf_with_bpe(models):
    hf, ours = models
    # (a cut inside what BPE merges into one token leaves nothing to score: lm-eval asserts on it)
    pairs = [p for p in _pairs() if not p[0] or hf._encode_pair(*p)[1]][:32]
    assert len(pairs) >= 28
    want = hf.loglikelihood(_requests("loglikelihood", pairs), disable_tqdm=True)
    got = ours.loglikelihood(_requests("loglikelihood", pairs), disable_tqdm=True)
    diff = max(abs(a[0] - b[0]) for a, b in zip(want, got, strict=True))
    assert diff <= TOL, diff
    assert [a[1] for a in want] == [b[1] for b in got]
    assert len({round(a[0], 2) for a in want}) > 15  # distinct, real scores
    print(f"hf parity: {len(pairs)} requests, max |Δ loglikelihood| = {diff:.2e}")


def test_loglikelihood_rolling_equals_hf_over_several_windows(models):
    hf, ours = models
    docs = [t for t in gsm8k_texts("test", limit=6)[1::2]]  # worked answers: longer than the context
    assert max(len(hf.tok_encode(d)) for d in docs) > 2 * CONTEXT
    want = hf.loglikelihood_rolling(_requests("loglikelihood_rolling", [(d,) for d in docs]), disable_tqdm=True)
    got = ours.loglikelihood_rolling(_requests("loglikelihood_rolling", [(d,) for d in docs]), disable_tqdm=True)
    for a, b in zip(want, got, strict=True):
        assert b == pytest.approx(a, abs=TOL * 10, rel=1e-6)


def test_greedy_generations_equal_hf(models):
    hf, ours = models
    questions = gsm8k_texts("test", limit=6)[::2]
    reqs = [(q[:120], {"until": ["\n\n", "?"], "do_sample": False, "max_gen_toks": 8}) for q in questions]
    reqs.append((questions[0][:60], {"until": ["."], "max_gen_toks": 5}))
    want = hf.generate_until(_requests("generate_until", reqs), disable_tqdm=True)
    got = ours.generate_until(_requests("generate_until", reqs), disable_tqdm=True)
    assert got == want
    assert any(w.strip() for w in want)
    # is_greedy on the greedy continuations themselves: true for both models
    pairs = [(ctx, text) for (ctx, _), text in zip(reqs, want) if text.strip()]
    flags_hf = [g for _, g in hf.loglikelihood(_requests("loglikelihood", pairs), disable_tqdm=True)]
    flags_ours = [g for _, g in ours.loglikelihood(_requests("loglikelihood", pairs), disable_tqdm=True)]
    assert flags_ours == flags_hf and any(flags_hf)


def test_cli_default_device_falls_back_to_cpu(gpt2_dir):
    from nnsight_codi.harness.adapter import lm_eval_device

    lm = NnsightCodiLM(model=str(gpt2_dir), device="cuda:0" if not torch.cuda.is_available() else "cpu",
                       progress=False)
    assert str(lm.device) == "cpu"
    assert lm_eval_device("cuda:7" if torch.cuda.device_count() < 8 else "x") == \
        ("cuda" if torch.cuda.is_available() else "cpu")


def test_hf_still_resolves_after_importing_the_harness():
    code = ("import nnsight_codi.harness\n"
            "from lm_eval.api.registry import get_model\n"
            "from lm_eval.models.huggingface import HFLM\n"
            "assert get_model('hf') is HFLM and get_model('nnsight-codi').__name__ == 'NnsightCodiLM'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
