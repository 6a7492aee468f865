"""Shared benchmark helpers: the bare PyTorch loops, round-robin timing with per-round ratios, models.

The bare loops are the baselines the targets are stated against: the same `LatentLoopState`
driving the HF model directly, no nnsight anywhere.

- `bare_loop`: asks the LM for what the step needs (last-position logits, the final-normed last
  hidden state read from the LM head's input), like the optimised driver;
- `bare_loop_pre13`: the loop as it was before #13 (all hidden states, full-sequence logits every
  call), for the "before" column.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nnsight_codi.models.kv_cache import cache_kwargs, output_cache

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def bare_loop(codi, prompts, max_new_tokens: int, num_latents: int | None = None):
    """Answer ids by plain PyTorch (lean LM calls); `Long[Tensor, "batch new"]`."""
    from nnsight_codi.tracing.codi_model import FinalHidden, lean_call_kwargs

    state = codi.new_loop_state(prompts, num_latents=num_latents, max_new_tokens=max_new_tokens)
    lm, prj, cache = codi._module, codi.prj._module, None
    extra = lean_call_kwargs(lm)
    with FinalHidden(lm) as final:
        while not state.done:
            out = lm(**state.call_kwargs(project=prj), **cache_kwargs(cache), use_cache=True, **extra)
            cache = output_cache(out)
            state.observe(final.take(), out.logits[:, -1])
    return state.generated()


def bare_loop_pre13(codi, prompts, max_new_tokens: int):
    """The bare loop before #13: every call returns all hidden states and full-sequence logits."""
    state = codi.new_loop_state(prompts, max_new_tokens=max_new_tokens)
    lm, prj, cache = codi._module, codi.prj._module, None
    while not state.done:
        out = lm(**state.call_kwargs(project=prj), **cache_kwargs(cache), use_cache=True, output_hidden_states=True)
        cache = output_cache(out)
        state.observe(out.hidden_states[-1][:, -1:], out.logits[:, -1].float().clone())
    return state.generated()


def round_robin(fns: dict[str, Callable[[], object]], repeats: int, baseline: str | None = None) -> dict:
    """Time every function once per round, `repeats` rounds, after one warm-up call of each.

    Returns per variant: median seconds, min/max, and the median and range of its per-round
    ratio to `baseline` (ratios of calls made seconds apart are far less noisy than absolute
    times on a shared CPU).
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, ts in times.items():
        row = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "runs_s": ts}
        if baseline is not None:
            ratios = [t / b for t, b in zip(ts, times[baseline])]
            row.update(ratio=statistics.median(ratios), ratio_min=min(ratios), ratio_max=max(ratios))
        out[name] = row
    return out


def tiny_questions(codi, n: int, seed: int = 3) -> list[str]:
    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options

    return list(load_eval_dataset("synthetic", limit=n, seed=seed, **synthetic_options(codi, None))["question"])


def build(size: str, device: str = "cpu"):
    """The shipped tiny CODI, or a CODI-GPT-2-sized model (12 × 768) from config with random weights."""
    from nnsight_codi.loading import load_model

    if size == "tiny":
        return load_model("tiny", device=device)
    from transformers import GPT2Config, GPT2LMHeadModel

    from nnsight_codi.models.codi_config import CodiConfig
    from nnsight_codi.models.converted import save_converted
    from nnsight_codi.models.projection import build_projection
    from nnsight_codi.tokenization import build_word_tokenizer

    torch.manual_seed(0)
    tok = build_word_tokenizer()
    vocab = len(tok)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=vocab + 3, n_layer=12, n_embd=768, n_head=12, n_positions=1024,
                                    bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    out = Path(tempfile.mkdtemp()) / "gpt2-sized"
    cfg = CodiConfig(pad_id=vocab, bot_id=vocab + 1, eot_id=vocab + 2, num_latents=6, eos_id=tok.eos_token_id)
    save_converted(out, lm, tok, build_projection(768, 768), cfg)
    return load_model(out, device=device)


def environment() -> dict:
    import os
    import platform

    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine(),
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "argv": sys.argv}
