"""Train variants of the tiny-CODI recipe side by side and compare them (the measurements behind
assets/tiny-codi/TRAINING.md's tables).

    python runs/sweep_tiny.py VARIANTS.json [--device cuda] [--jobs 8] [--out out/sweep] [--eval-size 1000]

VARIANTS.json maps a name to `TrainConfig` overrides of the shipped recipe (runs/train_tiny.py),
e.g. `{"base": {}, "k3": {"num_latents": 3}, "dw5": {"distill_weight": 5}}`. Each variant trains
in its own process (one thread each), then reports held-out accuracy (K latents, 0 latents, the
teacher's explicit CoT) and the logit-lens hit rates with their chance baseline; one JSON line
per variant goes to OUT/results.jsonl and a table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "runs"))

import dataclasses
import multiprocessing as mp

from nnsight_codi.config_cli import config_from_dict
from nnsight_codi.errors import one_line_errors  # noqa: E402


def recipe(out: str, overrides: dict, device: str):
    """The shipped recipe's TrainConfig with `overrides` applied."""
    from train_tiny import ARGS

    from nnsight_codi.commands.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(ARGS))
    if not isinstance(overrides, dict):
        raise ValueError(f"variant overrides must be a JSON object, got {overrides!r}")
    return config_from_dict(type(cfg), {**dataclasses.asdict(cfg), "out": out, "device": device, "threads": 1,
                                        "progress": False, "checkpoint_every": 0, **overrides}, "variant")


def run_variant(name: str, overrides: dict, out_root: str, device: str, eval_size: int) -> dict:
    """Train one variant of the recipe and measure its accuracies and best lens read-out."""
    import torch

    torch.set_num_threads(1)
    from nnsight_codi.training.report import load_trained, unseen_problems
    from nnsight_codi.training.train_evaluator import lens_table
    from nnsight_codi.training.trainer import Setup, evaluate_all, train

    cfg = recipe(f"{out_root}/{name}", overrides, device)
    t0 = time.time()
    metrics = train(cfg)
    model, prj, tok, codi = load_trained(Path(cfg.out) / "model")
    model.to(device); prj.to(device)
    ids = {"pad_id": codi.pad_id, "bot_id": codi.bot_id, "eot_id": codi.eot_id, "eos_id": codi.eos_id}
    data = unseen_problems(cfg, eval_size)
    acc = evaluate_all(Setup(model, prj, tok, ids), cfg, data)
    lens = lens_table(model, prj, tok, list(data["question"]), list(data["intermediates"]),
                      num_latents=cfg.num_latents, ids=ids, remove_eos=cfg.remove_eos, prompt_suffix=cfg.prompt_suffix)
    best = max(((s, l) for s in range(lens["steps"]) for l in range(lens["layers"])),
               key=lambda sl: lens["topk"][sl[0]][sl[1]] - lens["chance_topk"][sl[0]][sl[1]])
    s, l = best
    return {"name": name, "overrides": overrides, "seconds": round(time.time() - t0, 1),
            "train_seconds": metrics["train_seconds"], "steps": metrics["steps"],
            "acc_k": acc[f"acc_k{cfg.num_latents}"], "acc_k0": acc["acc_k0"], "acc_teacher": acc["acc_teacher_cot"],
            "acc_k_by_steps": acc[f"acc_k{cfg.num_latents}_by_steps"],
            "lens_best": {"step": s, "layer": l + 1, "top1": lens["top1"][s][l], "chance_top1": lens["chance_top1"][s][l],
                          "top5": lens["topk"][s][l], "chance_top5": lens["chance_topk"][s][l]},
            "lens": lens, "eval_curve": [h for h in metrics["history"] if "eval" in h]}


@one_line_errors("sweep_tiny")
def main(argv: list[str] | None = None) -> int:
    """Command line: check every variant, train them in `--jobs` processes, append and print each result."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", help="JSON file: {name: {TrainConfig overrides}}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="out/sweep")
    parser.add_argument("--eval-size", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        variants = json.loads(Path(args.variants).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{args.variants} is not valid JSON: {err}") from None
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"{args.variants} must map variant names to TrainConfig overrides")
    for name, overrides in variants.items():  # every variant's config is checked before any training
        try:
            recipe(f"{args.out}/{name}", overrides, args.device)
        except (TypeError, ValueError) as err:
            raise ValueError(f"variant {name!r}: {err}") from None
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results = Path(args.out) / "results.jsonl"
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_variant, name, ov, args.out, args.device, args.eval_size): name
                   for name, ov in variants.items()}
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except Exception as err:  # report and go on with the other variants
                row = {"name": futures[fut], "error": repr(err)}
            with results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            if "error" in row:
                print(f"{row['name']}: FAILED {row['error']}", flush=True)
                continue
            b = row["lens_best"]
            print(f"{row['name']:>14}: K {100 * row['acc_k']:.1f}%  K0 {100 * row['acc_k0']:.1f}%  "
                  f"teacher {100 * row['acc_teacher']:.1f}%  lens best step {b['step']} layer {b['layer']}: "
                  f"top1 {100 * b['top1']:.1f} (chance {100 * b['chance_top1']:.1f}) top5 {100 * b['top5']:.1f} "
                  f"(chance {100 * b['chance_top5']:.1f})  train {row['train_seconds']}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
