"""`nnsight-codi lens`: train and evaluate a tuned lens on a CODI model.

Examples::

    nnsight-codi lens train --model tiny --data latents --out out/lens-latents
    nnsight-codi lens train --model tiny --data latent:3 --limit 2000 --out out/lens-latent3
    nnsight-codi lens train --model tiny --data text --out out/lens-text
    nnsight-codi lens eval --model tiny --lens out/lens-latents --dataset synthetic --json

Training data come from `--dataset` (default: synthetic problems from `--seed 2`, disjoint from
the default evaluation seed 1) or, for latent modes, from a capture store's `hidden` (`--store`,
every layer). The lens is saved in tuned-lens's layout (`config.json` + `params.pt`, plus this
project's provenance in `nnsight_codi.json`); a killed run resumes from `DIR/checkpoint.pt`, which
is removed once training finishes. `eval` prints the per-layer KL to the model's final
distribution for the logit lens and the tuned lens on held-out positions.

tuned-lens's own spellings work too: `--model.name` (= --model), `-o/--output` (= --out),
`--num_steps` (= --steps), `--tokens_per_step` (= --train-batch), `--lr_scale`, `--momentum`,
`--weight_decay`, `--precision` (= --dtype), `--data.name` (= --dataset), `--per_gpu_batch_size`
(= --batch-size), `--checkpoint_freq`; for eval `-l/--lens_name` (= --lens).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ..reporting import markdown_table
from .common import add_model_args, emit_json, load_codi, synthetic_overrides
from .outdir import check_out

if TYPE_CHECKING:
    from nnsight import TransformersModel

    from ..tracing.codi_model import CodiModel


def _add_data_args(p: argparse.ArgumentParser, seed: int) -> None:
    p.add_argument("--dataset", "--data.name", dest="dataset", default="synthetic",
                   help="'synthetic', 'gsm8k' or a local file (default: synthetic)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="problems to use (default: 1000)")
    p.add_argument("--seed", type=int, default=seed, help=f"seed of the synthetic problems (default: {seed})")
    p.add_argument("--batch-size", "--per_gpu_batch_size", dest="batch_size", type=int, default=32,
                   help="problems per forward batch (default: 32)")


def _tuned_lens_aliases(p: argparse.ArgumentParser) -> None:
    """tuned-lens's spellings of the model flags (`--model.name`, `--precision`) on a subcommand."""
    for action in p._actions:
        if "--model" in action.option_strings:
            p._option_string_actions["--model.name"] = action
            cast(list, action.option_strings).append("--model.name")  # a list at run time
        if "--dtype" in action.option_strings:
            p._option_string_actions["--precision"] = action
            cast(list, action.option_strings).append("--precision")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `lens` subcommand with its `train` and `eval` actions; return its parser."""
    p = subparsers.add_parser("lens", help="train / evaluate a tuned lens", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="lens_command", required=True)
    t = sub.add_parser("train", help="train a tuned lens (tuned-lens layout)")
    add_model_args(t)
    t.add_argument("--data", default="latents", help="text | latents | latent:N (default: latents)")
    _add_data_args(t, seed=2)
    t.add_argument("--store", default=None, help="latent modes: read hidden from this store instead of running")
    t.add_argument("--steps", "--num_steps", dest="steps", type=int, default=None,
                   help="optimiser steps (default: scaled to the data, <= 250)")
    t.add_argument("--train-batch", "--tokens_per_step", dest="train_batch", type=int, default=512,
                   help="positions per optimiser step (default: 512)")
    t.add_argument("--lr-scale", "--lr_scale", dest="lr_scale", type=float, default=1.0,
                   help="lr = lr_scale * (1 - momentum) (default: 1.0)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD Nesterov momentum (default: 0.9)")
    t.add_argument("--weight-decay", "--weight_decay", dest="weight_decay", type=float, default=1e-3,
                   help="weight decay (default: 0.001)")
    t.add_argument("--checkpoint-freq", "--checkpoint_freq", dest="checkpoint_freq", type=int, default=100,
                   help="steps between resumable checkpoints (default: 100)")
    t.add_argument("--out", "-o", "--output", dest="out", required=True,
                   help="lens directory (config.json + params.pt); a lens whose training was interrupted "
                        "(checkpoint.pt) resumes with the same data and settings, a finished lens is refused, and "
                        "so is any other artifact (a capture store, a model, ...)")
    t.add_argument("--json", action="store_true")
    _tuned_lens_aliases(t)
    t.set_defaults(func=run_train)
    e = sub.add_parser("eval", help="per-layer KL of the logit and the tuned lens on held-out data")
    add_model_args(e)
    e.add_argument("--lens", "-l", "--lens_name", dest="lens", required=True, help="tuned-lens directory")
    e.add_argument("--data", default=None, help="text | latents | latent:N (default: the lens's training mode)")
    _add_data_args(e, seed=1)
    e.add_argument("--json", action="store_true")
    _tuned_lens_aliases(e)
    e.set_defaults(func=run_eval)
    return p


def _check_syntax(mode: str) -> None:
    from ..lens.lens_training import parse_data_mode

    parse_data_mode(mode, num_latents=10 ** 6)  # unknown modes fail before the model loads


def _dataset(args, codi: CodiModel | TransformersModel, default_limit: int = 1000):
    from ..data.eval_datasets import load_eval_dataset, synthetic_options

    limit = args.limit or default_limit
    if args.dataset == "synthetic":
        return load_eval_dataset("synthetic", limit=limit, seed=args.seed,
                                 **synthetic_options(codi, synthetic_overrides(args)))
    return load_eval_dataset(args.dataset, split=args.split, limit=limit, seed=args.seed)


def run_train(args: argparse.Namespace) -> int:
    """Run `nnsight-codi lens train` from parsed arguments; return the exit code."""
    from ..lens.lens_training import CHECKPOINT, TrainConfig, collect, default_steps, parse_data_mode, train_tuned_lens
    from ..lens.tuned import PARAMS_NAME

    _check_syntax(args.data)
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.checkpoint_freq < 1:
        raise ValueError(f"--checkpoint-freq must be >= 1, got {args.checkpoint_freq}")
    out = Path(args.out)
    check_out(out, "lens train")
    if (out / PARAMS_NAME).is_file() and not (out / CHECKPOINT).is_file():
        raise ValueError(f"--out {out} holds a trained lens; choose another directory")
    store = None
    if args.store:
        from ..store import open_store

        store = open_store(args.store)
    if args.dataset != "synthetic" and not Path(args.dataset).exists() and not args.dataset.startswith("gsm8k"):
        raise FileNotFoundError(f"dataset {args.dataset} not found")
    codi = load_codi(args)
    parse_data_mode(args.data, codi.num_latents)  # latent index in range, before any work
    data = collect(codi, _dataset(args, codi) if store is None else None, args.data, args.batch_size,
                   progress=not args.json, store=store)
    steps = args.steps or default_steps(len(data), args.train_batch)
    cfg = TrainConfig(steps=steps, batch_size=args.train_batch, lr_scale=args.lr_scale, momentum=args.momentum,
                      weight_decay=args.weight_decay, save_every=args.checkpoint_freq)
    meta = {"data": args.data, "dataset": args.dataset, "seed": args.seed, "limit": args.limit,
            "store": args.store}
    train_tuned_lens(codi, data, cfg, out=out, progress=not args.json, meta=meta)
    summary = {"lens": str(out), "data": args.data, "positions": len(data), "steps": steps}
    if args.json:
        emit_json(summary)
    else:
        print(f"tuned lens ({args.data}, {len(data)} positions, {steps} steps) saved to {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Run `nnsight-codi lens eval` from parsed arguments; return the exit code."""
    from ..lens.lens_training import collect, evaluate_lens, parse_data_mode
    from ..lens.tuned import CONFIG_NAME, LEGACY_KEY, SIDECAR_NAME, TunedLens

    lens_dir = Path(args.lens)
    if not (lens_dir / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{lens_dir} is not a tuned-lens directory (no {CONFIG_NAME})")
    sidecar = lens_dir / SIDECAR_NAME  # a lens tuned-lens trained has none: the default mode
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else \
        json.loads((lens_dir / CONFIG_NAME).read_text()).get(LEGACY_KEY, {})
    mode = args.data or meta.get("data", "latents")
    _check_syntax(mode)
    codi = load_codi(args)
    lens = TunedLens.load(lens_dir, model=codi)
    parse_data_mode(mode, codi.num_latents)
    data = collect(codi, _dataset(args, codi, default_limit=200), mode, args.batch_size, progress=not args.json)
    rows = evaluate_lens(codi, lens, data)
    summary = {"lens": str(lens_dir), "data": mode, "dataset": args.dataset, "positions": len(data), "layers": rows}
    if args.json:
        emit_json(summary)
    else:
        print(f"held-out KL to the final distribution (nats), {mode}, {len(data)} positions")
        print(markdown_table(rows))
    return 0
