"""Train the shipped tiny instruct models exactly as documented (their TRAINING.md).

    python runs/train_tiny_instruct.py                  # v2: warm start from tiny-instruct-v1, paraphrases
    python runs/train_tiny_instruct.py --install        # also copies out/tiny-instruct/model to the assets
    python runs/train_tiny_instruct.py --v1 --out out/tiny-instruct-v1   # the first model, from scratch
    python runs/train_tiny_instruct.py --out out/repro --stop-at 25 --no-final-eval   # reproduce the start

**v2** (`tiny-instruct`, shipped): continues `tiny-instruct-v1` (its weights and tokenizer; the
paraphrases' new words appended to the vocabulary) for `RECIPE["steps"]` steps on the same
problem generator, each problem asked with one of 26 + 26 trained instruction paraphrases
(`training.paraphrases`) or with none (then trained to answer directly); 6 + 6 held-out
paraphrases are recorded and measured, never trained. Two phases (`PHASES`): a 1,200-step
cosine schedule stopped at step 100, resumed with the schedule shortened to 800 steps.

**v1** (`tiny-instruct-v1`): three phases, each resuming the last (optimizer state carried
over) with its cosine schedule extended: an 850-step schedule stopped at step 500, extended to
1,200 steps, then to 3,000 steps (`PHASES_V1`).

Same seed → same data, init, instruction per problem and batch order; the step count fixes
the schedule, so a rerun reproduces the model (bit-exact on the same CPU, one thread).
`OMP_WAIT_POLICY=PASSIVE` keeps OpenMP from spin-waiting when other processes share the CPU.
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsight_codi.training.instruct import InstructConfig, instruct_report, paraphrase_report, train_instruct  # noqa: E402
from nnsight_codi.training.paraphrases import COT_HELDOUT, COT_TRAIN, DIRECT_HELDOUT, DIRECT_TRAIN  # noqa: E402

ASSETS = ROOT / "nnsight_codi" / "assets"
RECIPE_V1 = dict(
    out="out/tiny-instruct-v1", seed=3, test_seed=1_000_003,
    dataset="synthetic", train_size=60_000, eval_size=1000, eval_during=64,
    min_steps=2, max_steps=3, value_max=99, add_max=5, mul_max=3,
    n_layer=4, n_embd=128, n_head=4, number_init="fourier",
    direct_fraction=0.3, none_fraction=0.0,
    steps=850, batch_size=64, lr=3e-3, weight_decay=0.01, warmup_ratio=0.03,
    eval_every=200, checkpoint_every=100, log_every=25, threads=1,
)
# (schedule length, last step) of each phase of the v1 run; each phase resumes the one before
PHASES_V1 = ((850, 500), (1200, 1200), (3000, 3000))
RECIPE = {**RECIPE_V1,
          "out": "out/tiny-instruct", "seed": 4, "init_from": str(ASSETS / "tiny-instruct-v1"),
          "cot_instructions": COT_TRAIN, "direct_instructions": DIRECT_TRAIN,
          "heldout_cot_instructions": COT_HELDOUT, "heldout_direct_instructions": DIRECT_HELDOUT,
          "direct_fraction": 0.35, "none_fraction": 0.15, "none_reply": "direct",
          "steps": 1200, "lr": 1e-3, "warmup_ratio": 0.03, "eval_every": 400, "checkpoint_every": 100}
# (schedule length, last step) of each phase of the shipped v2 run: a 1,200-step schedule stopped at
# step 100 (the shared CPU ran at ~2-4 s/step), resumed with the schedule shortened to 800 steps
PHASES = ((1200, 100), (800, 800))


def main(argv: list[str] | None = None) -> int:
    """Command line: train (and optionally report on and install) a tiny instruct model."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--v1", action="store_true", help="the first model (tiny-instruct-v1), from scratch")
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None,
                   help="one phase with this schedule length (default: replay the recipe's phases)")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step (schedules unchanged)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-final-eval", action="store_true")
    p.add_argument("--report-size", type=int, default=None, help="problems per instruction of the final report")
    p.add_argument("--install", action="store_true", help="copy OUT/model into the package assets")
    args = p.parse_args(argv)
    recipe, phases = (RECIPE_V1, PHASES_V1) if args.v1 else (RECIPE, PHASES)
    out = args.out or recipe["out"]
    seed = recipe["seed"] if args.seed is None else args.seed

    def config(steps: int) -> InstructConfig:
        return InstructConfig(**{**recipe, "out": out, "seed": seed, "steps": steps})

    if args.steps is not None:  # one phase by hand
        cfg = config(args.steps)
        metrics = train_instruct(cfg, resume=args.resume, stop_at=args.stop_at)
    else:  # the shipped run, phase by phase (cut short by --stop-at)
        start = 0
        for steps, last in phases:
            if args.stop_at is not None and args.stop_at <= start:
                break
            cfg = config(steps)
            stop = last if args.stop_at is None else min(last, args.stop_at)
            metrics = train_instruct(cfg, resume=start > 0 or args.resume, stop_at=stop)
            start = stop
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    if not args.no_final_eval:
        report = instruct_report(cfg, size=args.report_size)
        print(json.dumps({m: {k: e[k] for k in ("accuracy", "chain_rate")} for m, e in report["modes"].items()}))
        if not args.v1:
            para = paraphrase_report(cfg, size=args.report_size)
            print(json.dumps(para["families"]))
    if args.install:
        dest = ASSETS / ("tiny-instruct-v1" if args.v1 else "tiny-instruct")
        notes = (dest / "TRAINING.md").read_text() if (dest / "TRAINING.md").is_file() else None
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(Path(out) / "model", dest)
        if notes is not None:  # the model card is ours, not the run's
            (dest / "TRAINING.md").write_text(notes)
        print(f"installed {Path(out) / 'model'} -> {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
