r"""`nnsight-codi train`: CODI training from the command line.

Every `TrainConfig` field is a flag (`--num-latents 6`, `--distill-weight 1`, booleans as
`--include-last-cot/--no-include-last-cot`). Examples::

    nnsight-codi train --out out/tiny --steps 3000 --dataset synthetic --seed 0
    nnsight-codi train --out out/gpt2-codi --base /models/gpt2 --dataset data/gsm8k_aug.jsonl \
        --num-latents 6 --lr 3e-3 --distill-weight 1 --no-include-last-cot --lora-r 128
    nnsight-codi train --out out/tiny --resume          # continue from out/tiny/checkpoint

The module also runs standalone: `python -m nnsight_codi.commands.train --help`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config_cli import add_config_args, config_kwargs
from ..training.train_config import TrainConfig
from .outdir import artifact_at, check_out

_HELP = {
    "out": "output directory (model/, checkpoint/, log.jsonl, metrics.json); a training run there that reached a "
           "checkpoint or its model is continued with --resume and refused without it (one that did not starts "
           "over); any other artifact (a capture store, a lens, ...) is refused",
    "dataset": "'synthetic' or a local GSM8k-Aug style file/directory (json, jsonl, parquet, csv)",
    "base": "'tiny-gpt2' (built from scratch with the word tokenizer) or a local HF model directory",
    "steps": "optimizer steps (reproducible); use --minutes for a wall-clock budget instead",
    "minutes": "wall-clock budget in minutes (the schedule follows time; not bit-reproducible)",
    "num_latents": "K latent iterations",
    "distill_weight": "weight of the distillation loss (gamma)",
    "lora_r": "0 = full fine-tuning; > 0 = LoRA rank (merged into the saved model)",
    "seed": "seed of init, data order and the synthetic train split",
    "test_seed": "seed of the synthetic held-out split (must differ from --seed)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`config_cli`; None when not given, so flags override a
    --config file), plus --resume, --stop-at, --final-eval and --config.
    """
    add_config_args(parser, TrainConfig, help_texts=_HELP, exclude=("extra",), unset=True)
    parser.add_argument("--config", default=None, help="a train_config.json to start from (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint/state.pt")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop after this step (checkpoint + save) though the schedule runs to --steps; "
                             "continue later with --resume")
    parser.add_argument("--final-eval", action=argparse.BooleanOptionalAction, default=True,
                        help="evaluate on the held-out set at the end (K latents, 0 latents, teacher CoT)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `train` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser("train", help="train a CODI model (tiny synthetic default, or a local HF base)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of the flags given, over `--config` (or a resumed run's saved config)."""
    base: dict[str, Any] = {}
    if args.config:
        base = TrainConfig.load(args.config).to_dict()
    elif args.resume and args.out and (Path(args.out) / "train_config.json").is_file():
        base = TrainConfig.load(Path(args.out) / "train_config.json").to_dict()
    base.update(config_kwargs(TrainConfig, args, given_only=True))
    if base.get("minutes") is not None and getattr(args, "steps", None) is None and not args.config:
        base["steps"] = None  # --minutes alone: a pure wall-clock budget
    return TrainConfig(**base)


def check_run_dir(out: str | Path | None, resume: bool) -> None:
    """Refuse an `--out` holding another artifact, or without `--resume` a training run with something to lose
    (a checkpoint or the model), before any work.
    """
    path = check_out(out, "train")
    if path is None or resume or artifact_at(path) != "training run":
        return
    from ..training.trainer import CHECKPOINT  # here: the parser stays torch-free

    if (path / CHECKPOINT).is_file() or (path / "model").is_dir():
        raise ValueError(f"--out {out} holds a training run; continue it with --resume or choose another directory")


def run(args: argparse.Namespace) -> int:
    """Train, save `OUT/model`, optionally evaluate; print a JSON summary. Returns the exit code."""
    from ..training.trainer import build_setup, evaluate_all, load_data, train  # noqa: F401

    try:
        cfg = config_from_args(args)
        check_run_dir(cfg.out, args.resume)
        from ..models.devices import resolve_device

        resolve_device(cfg.device)  # an unknown device fails before any work
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"nnsight-codi train: {err}", file=sys.stderr)
        return 2
    try:
        metrics = train(cfg, resume=args.resume, stop_at=getattr(args, "stop_at", None))
    except (ValueError, FileNotFoundError) as err:
        print(f"nnsight-codi train: {err}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in metrics.items() if k != "history"}
    if args.final_eval:
        from ..training.report import final_report

        summary.update(final_report(cfg))
    print(json.dumps(summary, indent=2))
    print(f"model saved to {Path(cfg.out) / 'model'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` with the `train` flags (standalone `nnsight-codi train`) and run it; return the exit code."""
    parser = argparse.ArgumentParser(prog="nnsight-codi train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
