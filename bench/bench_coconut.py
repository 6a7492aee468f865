"""Batched Coconut (this package's loop, KV cache) against facebookresearch/coconut's own `generate`.

    python bench/bench_coconut.py --reference-src DIR --reference-python PY [--kind gpt2|llama] [--n 32]
        [--num-latents 6] [--max-new-tokens 16] [--json PATH]

Same machine, same run, same problems, same fabricated checkpoint (`tests/models/coconut_fixtures.py`): the
reference (a checkout of facebookresearch/coconut@27273cb at `--reference-src`, run by `--reference-python`,
an environment with its pinned torch/transformers) answers one question at a time, re-running the whole
prefix for every answer token (no KV cache); this package answers them batched (`latent_generate`, batch =
n) and one at a time. Both are single-threaded. Answers are compared token for token. Writes
bench/results/bench_coconut.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "models"))


def questions(n: int, tokenizer, room: int) -> list[str]:
    """The first n synthetic problems (seed 1) whose prompt fits `room` tokens (the fabricated LM has 128 positions)."""
    from nnsight_codi.data.synthetic import generate_problems

    pool = list(generate_problems(20 * n, seed=1, min_steps=1, max_steps=2)["question"])
    fits = [q for q in pool if len(tokenizer(q + "\n")["input_ids"]) + 1 <= room]
    if len(fits) < n:
        raise SystemExit(f"error: only {len(fits)} problems fit the fabricated model's context")
    return fits[:n]


def main(argv: list[str] | None = None) -> int:
    """Run both, compare, print and write the timings."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-src", required=True, help="checkout of facebookresearch/coconut (27273cb)")
    p.add_argument("--reference-python", required=True, help="python of the reference's environment")
    p.add_argument("--kind", default="gpt2", choices=["gpt2", "llama"])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--num-latents", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "bench_coconut.json"))
    args = p.parse_args(argv)
    for path, what in ((args.reference_src, "--reference-src"), (args.reference_python, "--reference-python")):
        if not Path(path).exists():
            print(f"error: {what} {path}: no such file or directory", file=sys.stderr)
            return 2
    from coconut_fixtures import fabricate

    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import answer_ids

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        base, ckpt = fabricate(args.kind, tmp)
        from transformers import AutoTokenizer

        qs = questions(args.n, AutoTokenizer.from_pretrained(str(base)), 128 - args.num_latents - 2 - args.max_new_tokens)
        ref = json.loads(subprocess.run(
            [args.reference_python, str(ROOT / "bench" / "coconut_reference_driver.py"), args.reference_src, tmp,
             json.dumps(qs), str(args.num_latents), str(args.max_new_tokens)],
            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        model = load_model(ckpt, base=str(base))
        eos, start_at = model.codi_config.eos_id, model.family_rules.eos_stops_from
        with torch.inference_mode():
            model.latent_generate(model.encode(qs[:2]), num_latents=args.num_latents, max_new_tokens=2)  # warm-up
            t0 = time.perf_counter()
            batched = model.latent_generate(model.encode(qs), num_latents=args.num_latents,
                                            max_new_tokens=args.max_new_tokens)
            t_batched = time.perf_counter() - t0
            t0 = time.perf_counter()
            single = [model.latent_generate(model.encode([q]), num_latents=args.num_latents,
                                            max_new_tokens=args.max_new_tokens)[0] for q in qs]
            t_single = time.perf_counter() - t0
    ours_b = [answer_ids(row.tolist(), eos, start_at) for row in batched]
    ours_1 = [answer_ids(row.tolist(), eos, start_at) for row in single]
    result = {
        "kind": args.kind, "n": args.n, "num_latents": args.num_latents, "max_new_tokens": args.max_new_tokens,
        "reference_seconds": ref["seconds"], "reference_torch": ref["torch"], "ours_batched_seconds": t_batched,
        "ours_batch1_seconds": t_single, "speedup_batched": ref["seconds"] / t_batched,
        "speedup_batch1": ref["seconds"] / t_single,
        "equal_batched": sum(a == b for a, b in zip(ours_b, ref["answers"])),
        "equal_batch1": sum(a == b for a, b in zip(ours_1, ref["answers"])),
        "machine": "CPU, 1 thread each (shared machine: ratios are what to read)",
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
