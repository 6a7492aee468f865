"""`nnsight-codi convert SRC DST [--base BASE]`: a reference CODI checkpoint → a converted directory.

SRC is a known hub id (zen-E/CODI-gpt2, …; needs network), a checkpoint file
(`pytorch_model.bin` / `model.safetensors`) or a directory holding one. DST becomes a standard
HF model directory (merged LM + tokenizer) plus `prj.safetensors` and `codi.json`, which
`--model DST` then loads offline and fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.hub import download_checkpoint
from ..models.model_sources import check_model_source, with_hub_errors
from ..models.registry import lookup
from .common import emit_json
from .outdir import check_out


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `convert` subcommand and its flags; return its parser."""
    p = subparsers.add_parser("convert", help="convert a reference CODI checkpoint to a fast local directory")
    p.add_argument("src", help="hub id, checkpoint file, or directory with pytorch_model.bin / model.safetensors")
    p.add_argument("dst", help="output directory (must not exist or be empty: a converted model there is refused, as is any "
                   "other artifact)")
    p.add_argument("--base", default=None, help="base model: hub id or local HF dir with config + tokenizer")
    p.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: registry or 32)")
    p.add_argument("--num-latents", type=int, default=None, help="K to record in codi.json (default: registry or 6)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi convert` from parsed arguments; return the exit code."""
    from ..models.checkpoint import convert_reference_checkpoint, find_checkpoint_file
    from ..models.converted import save_converted
    check_out(args.dst, "convert", flag="DST")
    dst = Path(args.dst)
    if dst.exists() and any(dst.iterdir()):
        raise ValueError(f"{dst} exists and is not empty; choose a new directory")
    entry = lookup(args.src)
    if entry is not None and not Path(args.src).exists():
        file = download_checkpoint(entry)
    else:
        check_model_source(args.src)
        file = find_checkpoint_file(args.src) if Path(args.src).exists() else None
        if file is None:
            raise ValueError(f"{args.src}: no CODI checkpoint found (and not a known hub id)")
    base = args.base or (entry.base if entry else None)
    if base is not None:
        check_model_source(base)
    lm, tokenizer, prj, config = with_hub_errors(
        lambda: convert_reference_checkpoint(file, base, entry, args.lora_alpha, args.num_latents), f"base model {base}")
    save_converted(dst, lm, tokenizer, prj, config)
    info = {"dst": str(dst), "source": config.source, "base": config.base, "num_latents": config.num_latents,
            "lora_rank": config.extra.get("lora_rank"), "merged_modules": config.extra.get("merged_modules")}
    if args.json:
        emit_json(info)
    else:
        print(f"converted {config.source} → {dst} (LoRA r={info['lora_rank']}, {info['merged_modules']} modules merged)")
    return 0
