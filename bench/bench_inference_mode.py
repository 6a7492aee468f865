"""A capture through the public `run_loop`, with autograd on (`grad=True`, what it did before #20)
and by default (`torch.inference_mode()`), against the bare PyTorch loop, side by side.

    python bench/bench_inference_mode.py [--batch 32] [--repeats 7] [--json PATH]

Tiny CODI, K = 6, ≤ 16 answer tokens; a `Capture` of the hidden states of every layer and the
latent inputs. Round-robin timing (`common.round_robin`): each variant's per-round ratio to the
bare loop (run under inference mode). Writes bench/results/inference_mode.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, bare_loop, build, environment, round_robin, tiny_questions  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=str(RESULTS / "inference_mode.json"))
    args = parser.parse_args(argv)

    from nnsight_codi.tracing.capture_hook import Capture
    from nnsight_codi.tracing.loop import run_loop

    codi = build("tiny")
    prompts = codi.encode(tiny_questions(codi, args.batch))
    hook = Capture(["hidden", "latent_input"], range(codi.num_layers + 1), codi.num_latents)

    def bare():
        with torch.inference_mode():
            return bare_loop(codi, prompts, 16)

    fns = {"bare loop (inference mode)": bare,
           "run_loop + Capture, grad=True (autograd on)": lambda: run_loop(codi, prompts, [hook], max_new_tokens=16,
                                                                           grad=True),
           "run_loop + Capture, default (inference mode)": lambda: run_loop(codi, prompts, [hook], max_new_tokens=16)}
    timing = round_robin(fns, args.repeats, baseline="bare loop (inference mode)")
    result = {"batch": args.batch, "repeats": args.repeats, "timing": timing, "environment": environment()}
    for name, row in timing.items():
        print(f"{name:48s} median {row['median_s'] * 1e3:7.1f} ms   × bare {row['ratio']:.2f} "
              f"[{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
