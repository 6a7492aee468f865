"""`nnsight-codi eval`: accuracy of a CODI model on GSM8K, synthetic problems or a local file.

Examples::

    nnsight-codi eval --model tiny --dataset synthetic --limit 200
    nnsight-codi eval --model zen-E/CODI-gpt2 --dataset gsm8k --device cuda --dtype bfloat16 --batch-size 128
    nnsight-codi eval --model out/codi-gpt2 --dataset gsm8k:shipped --out out/eval --json   # GSM8K shipped, offline
    nnsight-codi eval --model tiny --dataset my_problems.jsonl          # question/answer lines
"""

from __future__ import annotations

import argparse
import time

from .common import (
    add_dataset_args,
    add_loop_args,
    add_model_args,
    add_numerics_arg,
    emit_json,
    load_codi,
    remote_value,
    synthetic_overrides,
)
from .outdir import check_out


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `eval` subcommand and its flags; return its parser."""
    p = subparsers.add_parser("eval", help="evaluate a CODI model (accuracy)",
                              description="Run the latent loop over a dataset and score answers as the reference.")
    add_model_args(p)
    add_numerics_arg(p)
    add_dataset_args(p)
    add_loop_args(p)
    p.add_argument("--feedback", default="latent", choices=["latent", "pause"],
                   help="latent input: the family's own (latent) or the pause control (a constant: the same K extra "
                        "positions, nothing fed back), for a model of any family (default: latent)")
    p.add_argument("--out", default=None, help="write predictions.jsonl and summary.json here (predictions there "
                   "are replaced; any other artifact is refused)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi eval` from parsed arguments; return the exit code."""
    from ..data.eval_datasets import load_eval_dataset, synthetic_options
    from ..evaluation import evaluate

    check_out(args.out, "eval")
    remote = remote_value(args.remote)
    if args.dataset != "synthetic":  # a bad path fails before the model loads
        dataset = load_eval_dataset(args.dataset, split=args.split, limit=args.limit, seed=args.seed)
    codi = load_codi(args)
    if args.dataset == "synthetic":  # problems from the distribution the model was trained on
        dataset = load_eval_dataset("synthetic", limit=args.limit, seed=args.seed,
                                    **synthetic_options(codi, synthetic_overrides(args)))
    start = time.perf_counter()
    result = evaluate(codi, dataset, batch_size=args.batch_size, num_latents=args.num_latents,
                      max_new_tokens=args.max_new_tokens, masking=args.masking, remote=remote,
                      progress=not args.json, model_name=str(args.model), dataset_name=str(args.dataset),
                      feedback=None if args.feedback == "latent" else args.feedback)
    summary = result.summary() | {"seconds": round(time.perf_counter() - start, 3), "masking": args.masking,
                                  "numerics": args.numerics, "latent_family": codi.latent_family,
                                  "feedback": args.feedback}
    if args.out:
        summary["out"] = str(result.write(args.out))
    if args.json:
        emit_json(summary)
    else:
        print(f"accuracy {result.accuracy:.2%} ({summary['correct']}/{result.n}) on {args.dataset} "
              f"with {result.num_latents} latents [{args.model}] in {summary['seconds']:.1f}s")
        if args.out:
            print(f"predictions: {summary['out']}/predictions.jsonl")
    return 0
