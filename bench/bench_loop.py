"""The latent loop against the bare PyTorch loop, every executor, side by side (CPU targets of #13).

    python bench/bench_loop.py [--batch 64] [--repeats 7] [--quick] [--device cpu|cuda] [--json PATH]

One batch of synthetic questions (tiny CODI, K = 6, ≤ 16 answer tokens), timed round-robin (one
call of each variant per round, after a warm-up call of each); ratios are per round to `bare`:

- `bare`           plain PyTorch driving the HF model (lean calls), the target's baseline;
- `bare pre-#13`   the same with the pre-#13 calls (all hidden states, full-sequence logits);
- `eval`           `run_loop(codi, prompts)`: what `evaluate`/`eval` runs (the driver, plainly called);
- `traced`         `with codi.latent_generate(...)`: one nnsight trace over the loop, no hooks;
- `capture`        `run_loop` + `Capture(hidden of all layers, latent_input)` + `assemble` to numpy
                   (in-memory capture, what `capture` computes per batch before writing);
- `session`        the NDIF-shaped session executor, run locally;
- `session local`  the same with `remote="local"` (each request serialised and deserialised).

Also: throughput at batch 1 vs batch B (questions/s; same answers checked), the FLOPs of one batch
and the CPU's measured matmul peak (compute-bound estimate), and the tokenisation and decoding
time of the batch. Writes bench/results/bench_loop.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, bare_loop, bare_loop_pre13, build, environment, round_robin, tiny_questions  # noqa: E402


def matmul_peak(n: int = 1024, repeats: int = 5) -> float:
    """Measured float32 GEMM FLOP/s of this process (its torch threads), best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n ** 3 / best


def batch_flops(codi, prompts, answer_steps: int) -> dict:
    """Multiply-add FLOPs of one batch through the loop (weights: 2·params per token; attention:
    2·2·d per key per layer; LM head only at the last position), padding included."""
    cfg = codi._module.config
    d, layers = codi.hidden_size, codi.num_layers
    inner = getattr(cfg, "n_inner", None) or 4 * d
    per_token_blocks = 2 * layers * (4 * d * d + 2 * d * inner)
    head = 2 * d * cfg.vocab_size
    batch, width = prompts.input_ids.shape
    k = codi.num_latents
    flops = batch * width * per_token_blocks + batch * head  # prompt (head on the last position only)
    flops += batch * 2 * layers * 2 * d * width * (width + 1) / 2  # causal attention over the prompt
    ctx = width
    for _ in range(k + 1 + answer_steps):  # latents, eot, answer tokens: one position each
        ctx += 1
        flops += batch * (per_token_blocks + head + 2 * layers * 2 * d * ctx)
    flops += batch * k * 2 * (d * d) * 2  # projection (two linear layers)
    real = int(prompts.attention_mask.sum()) + batch * (k + 1 + answer_steps)
    return {"flops": flops, "tokens": batch * width + batch * (k + 1 + answer_steps), "real_tokens": real,
            "per_token_flops": per_token_blocks + head}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="3 rounds, 16 questions at batch 1")
    ap.add_argument("--json", default=str(RESULTS / "bench_loop.json"))
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    from nnsight_codi.tracing.capture_hook import Capture, assemble
    from nnsight_codi.tracing.loop import run_loop
    from nnsight_codi.tracing.session import plain_lm_model, run_latent_session

    codi = build("tiny", args.device)
    questions = tiny_questions(codi, args.batch)
    t0 = time.perf_counter()
    prompts = codi.encode(questions)
    encode_s = time.perf_counter() - t0
    hook = Capture(["hidden", "latent_input"], range(codi.num_layers + 1), codi.num_latents)
    lm = plain_lm_model(codi)
    m = args.max_new_tokens
    width = prompts.input_ids.shape[1] + codi.num_latents + 3

    def traced():
        with codi.latent_generate(prompts, max_new_tokens=m) as tracer:
            tokens = tracer.result.save()
        return tokens

    def capture():
        tokens, records = run_loop(codi, prompts, [hook], max_new_tokens=m)
        return assemble(records, hook, prompts.attention_mask, width, codi.hidden_size)

    def session(remote=None):
        return run_latent_session(lm, codi.prj._module, codi.codi_config, prompts, max_new_tokens=m, remote=remote)

    with torch.inference_mode():
        reference = bare_loop(codi, prompts, m)
        assert torch.equal(run_loop(codi, prompts, max_new_tokens=m)[0], reference)
        assert torch.equal(bare_loop_pre13(codi, prompts, m), reference)
        assert torch.equal(session("local")[0], reference)
        rows = round_robin({
            "bare": lambda: bare_loop(codi, prompts, m),
            "bare pre-#13": lambda: bare_loop_pre13(codi, prompts, m),
            "eval": lambda: run_loop(codi, prompts, max_new_tokens=m),
            "traced": traced,
            "capture": capture,
            "session": session,
            "session local": lambda: session("local"),
        }, repeats, baseline="bare")
        t0 = time.perf_counter()
        texts = codi.decode(reference)
        decode_s = time.perf_counter() - t0
        # batch 1 vs batch B: the same questions one at a time (answers must match)
        n_single = 16 if args.quick else args.batch
        t0 = time.perf_counter()
        singles = [run_loop(codi, codi.encode([q]), max_new_tokens=m)[0] for q in questions[:n_single]]
        single_s = (time.perf_counter() - t0) / n_single
        for row, tokens in enumerate(singles):
            assert tokens[0].tolist() == reference[row, : tokens.shape[1]].tolist(), row
    answer_steps = reference.shape[1] - 1
    work = batch_flops(codi, prompts, answer_steps)
    peak = matmul_peak()
    batch_s = rows["eval"]["median_s"]
    result = {
        "env": environment(), "model": "tiny", "layers": codi.num_layers, "dim": codi.hidden_size,
        "latents": codi.num_latents, "batch": args.batch, "max_new_tokens": m, "answer_tokens": reference.shape[1],
        "repeats": repeats, "variants": rows,
        "encode_s": encode_s, "decode_s": decode_s, "answers_sample": texts[:2],
        "throughput_qps": {"batch 1": 1 / single_s, f"batch {args.batch}": args.batch / batch_s},
        "batch1_questions_checked": n_single,
        "compute": {**work, "achieved_flops_s": work["flops"] / batch_s, "matmul_peak_flops_s": peak,
                    "fraction_of_peak": work["flops"] / batch_s / peak,
                    "padding_fraction": 1 - work["real_tokens"] / work["tokens"]},
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in rows.items():
        print(f"{name:14s} {row['median_s'] * 1000:7.1f} ms  ×{row['ratio']:.2f} [{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]")
    print(json.dumps({k: result[k] for k in ("throughput_qps", "compute", "encode_s", "decode_s")}, indent=1))
    return result


if __name__ == "__main__":
    main()
