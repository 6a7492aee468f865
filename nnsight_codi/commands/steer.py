"""`nnsight-codi steer`: accuracy under one intervention vs the unsteered baseline on the same examples.

Examples::

    nnsight-codi steer --mode hidden --at 6 --layer 4 --coef 1 --pair 3,5 --extra-latent-step --limit 200
    nnsight-codi steer --mode kv --pair 2,4 --coef-k 1 --coef-v 1 --blocks 0,1 --positions latents --json
    nnsight-codi steer --mode patch --at 3 --patch random --out out/steer
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ..data.scoring import extract_gold
from ..predictions import Prediction, write_predictions
from ..stats import bootstrap_ci, paired_bootstrap_diff, significant
from ..steps import Step, parse_step
from .common import (
    add_dataset_args,
    add_loop_args,
    add_model_args,
    emit_json,
    int_list,
    load_codi,
    remote_value,
    step_arg,
    synthetic_overrides,
)
from .outdir import check_out


def _pair(text: str) -> tuple[Step, Step]:
    try:
        a, b = (parse_step(x) for x in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--pair takes two latent steps A,B (indices or names: latent1,latent3), "
                                         f"got {text!r} ({err})") from err
    return a, b


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `steer` subcommand and its flags; return its parser."""
    p = subparsers.add_parser("steer", help="steer or patch the latent loop; accuracy vs the unsteered baseline",
                              description="Run one intervention (hidden-state steering, KV-cache steering or "
                                          "latent patching) and the unsteered baseline on the same examples.")
    add_model_args(p)
    add_dataset_args(p)
    add_loop_args(p)
    p.add_argument("--mode", required=True, help="hidden | kv | patch")
    p.add_argument("--pair", type=_pair, default=None, help="A,B: steer with mean(latent A) - mean(latent B)")
    p.add_argument("--vectors", default=None,
                   help="vector store (or capture store with hidden/kv/latent_input) the --pair vectors and patch "
                        "statistics come from (default: a reference capture of held-out problems)")
    p.add_argument("--vector", default=None, help="safetensors file: `vector` (hidden) or `keys`/`values` (kv)")
    p.add_argument("--at", type=step_arg, default=None,
                   help="step to steer/patch: an index or a name (bot, latent1..latentK, eot; default K, the last latent)")
    p.add_argument("--layer", type=int, default=None, help="hidden: residual layer 0..L (default L)")
    p.add_argument("--coef", type=float, default=1.0, help="hidden: coefficient (default 1)")
    p.add_argument("--extra-latent-step", action="store_true",
                   help="hidden: run one more latent after the last, so the KV cache carries the edit")
    p.add_argument("--coef-k", type=float, default=1.0, help="kv: coefficient of Δkeys (default 1)")
    p.add_argument("--coef-v", type=float, default=1.0, help="kv: coefficient of Δvalues (default 1)")
    p.add_argument("--blocks", type=int_list, default=None,
                   help="kv: transformer blocks 0..L-1 whose cache entries are edited (default all)")
    p.add_argument("--layers", dest="old_layers", default=None, help=argparse.SUPPRESS)  # refused: see --blocks
    p.add_argument("--positions", default="latents", help="kv: latents | last | all | latent<k> (latent k's entry alone; default latents)")
    p.add_argument("--patch", default=None, help="patch: random | mean | zero | FILE (safetensors `vector`) at --at; pause: every latent "
                        "fed the family's pause input (the pause control)")
    p.add_argument("--reference-limit", type=int, default=200, help="reference problems for vectors (default 200)")
    p.add_argument("--reference-seed", type=int, default=2, help="seed of the reference problems (default 2)")
    p.add_argument("--out", default=None,
                   help="write predictions.jsonl, summary.json and the reference vectors here (predictions there "
                        "are replaced, reference vectors of the same problems reused; any other artifact is refused)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)
    return p


def condition_from_args(args: argparse.Namespace):
    """The `Condition` the flags describe (checks what needs no model)."""
    from ..interventions import PATCH_KINDS, Condition
    from ..interventions.conditions import PAUSE
    from ..interventions.steering import KV_POSITIONS, latent_position

    if getattr(args, "old_layers", None) is not None:
        raise ValueError(f"steer takes --blocks {args.old_layers} for the KV-cache blocks 0..L-1 it edits; --layers "
                         "(as in capture and cot-vectors) means residual layers 0..L, 0 = the embeddings")
    if args.mode not in ("hidden", "kv", "patch"):
        raise ValueError(f"unknown mode {args.mode!r}: use hidden, kv or patch")
    if args.positions not in KV_POSITIONS and latent_position(args.positions) is None:
        raise ValueError(f"unknown position set {args.positions!r}: use {', '.join(KV_POSITIONS)} or latent<k>")
    if args.vector and not Path(args.vector).is_file():
        raise FileNotFoundError(f"vector file {args.vector} not found")
    if args.vectors and not Path(args.vectors).exists():
        raise FileNotFoundError(f"vector store {args.vectors} not found")
    if args.mode in ("hidden", "kv") and not (args.pair or args.vector):
        raise ValueError(f"--mode {args.mode} needs --pair A,B or --vector FILE")
    if args.mode == "patch":
        if not args.patch:
            raise ValueError(f"--mode patch needs --patch ({', '.join(PATCH_KINDS)}, {PAUSE} or a vector file)")
        if args.patch not in (*PATCH_KINDS, PAUSE) and not Path(args.patch).is_file():
            raise ValueError(f"--patch must be one of {', '.join((*PATCH_KINDS, PAUSE))} or an existing file, "
                             f"got {args.patch!r}")
        return Condition("patch", patch=args.patch, at=args.at)
    if args.mode == "hidden":
        return Condition("hidden", pair=args.pair, coef=args.coef, at=args.at, layer=args.layer,
                         extra_latent_step=args.extra_latent_step, vector_file=args.vector)
    return Condition("kv", pair=args.pair, coef_k=args.coef_k, coef_v=args.coef_v, blocks=args.blocks,
                     positions=args.positions, vector_file=args.vector)


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi steer` from parsed arguments; return the exit code."""
    from ..interventions import Condition, Resources
    from ..interventions.conditions import evaluate_conditions
    from ..interventions.steering_sweep import SweepConfig, load_dataset_for, reference_vectors
    check_out(args.out, "steer")
    remote = remote_value(args.remote)
    cond = condition_from_args(args)
    if args.dataset != "synthetic":
        from ..data.eval_datasets import load_eval_dataset

        load_eval_dataset(args.dataset, split=args.split, limit=args.limit, seed=args.seed)
    if synthetic_overrides(args):
        raise ValueError("steer runs the model's own synthetic distribution; difficulty flags are not supported")
    codi = load_codi(args)
    cfg = SweepConfig(model=args.model, dataset=args.dataset, split=args.split, limit=args.limit, seed=args.seed,
                      num_latents=args.num_latents, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                      masking=args.masking, device=args.device, dtype=args.dtype, vectors=args.vectors,
                      reference_limit=args.reference_limit, reference_seed=args.reference_seed)
    from ..interventions.conditions import ModelShape, check_condition, validate_conditions

    shape = ModelShape.of(codi, args.num_latents)
    cond = cond.resolve(shape.num_latents)  # step names → indices
    check_condition(cond, shape, reference_pairs=not args.vectors)  # before the reference vectors are computed
    needs_vectors = cond.pair is not None or cond.patch in ("random", "mean")
    start = time.perf_counter()
    vectors = None
    if needs_vectors:
        with tempfile.TemporaryDirectory() as tmp:
            vectors = reference_vectors(codi, cfg, Path(args.out) if args.out else Path(tmp), progress=not args.json)
    res = Resources.from_vectors(vectors, seed=args.seed)
    validate_conditions([Condition("none"), cond], shape, res)
    dataset = load_dataset_for(codi, cfg, args.seed, args.limit)
    questions, golds = list(dataset["question"]), [extract_gold(a) for a in dataset["answer"]]
    results = evaluate_conditions(codi, questions, golds, [Condition("none"), cond], res, args.batch_size,
                                  shape.num_latents, args.max_new_tokens, args.masking, remote, progress=not args.json)
    steered, base = results[cond.name], results["none"]
    acc, base_acc = bootstrap_ci(steered["correct"]), bootstrap_ci(base["correct"])
    diff = paired_bootstrap_diff(steered["correct"], base["correct"])
    summary = {"condition": cond.as_dict(), "n": len(questions), "accuracy": acc.value,
               "accuracy_ci": [acc.low, acc.high], "baseline_accuracy": base_acc.value,
               "baseline_ci": [base_acc.low, base_acc.high], "difference": diff.value,
               "difference_ci": [diff.low, diff.high], "significant": significant(diff),
               "changed_answers": int(sum(a != b for a, b in zip(steered["texts"], base["texts"]))),
               "seconds": round(time.perf_counter() - start, 3), "model": str(args.model), "dataset": str(args.dataset)}
    if args.out:
        out = Path(args.out)
        write_predictions(out, (Prediction(str(ex), questions[i], steered["texts"][i], float(steered["pred"][i]),
                                           golds[i], bool(steered["correct"][i]),
                                           baseline_correct=bool(base["correct"][i]))
                                for i, ex in enumerate(dataset["id"])))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        summary["out"] = str(out)
    if args.json:
        emit_json(summary)
    else:
        print(f"{cond.name}: accuracy {acc} vs unsteered {base_acc}; difference {diff} "
              f"({'significant' if summary['significant'] else 'not significant'}) in {summary['seconds']:.1f}s")
    return 0
