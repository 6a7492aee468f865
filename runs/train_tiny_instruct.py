"""Train the shipped tiny instruct model (nnsight_codi/assets/tiny-instruct) exactly as documented.

    python runs/train_tiny_instruct.py                  # trains into out/tiny-instruct, then reports
    python runs/train_tiny_instruct.py --install        # also copies out/tiny-instruct/model to the assets
    python runs/train_tiny_instruct.py --out out/repro --stop-at 50 --no-final-eval   # reproduce the start

As shipped, the run had three phases, each resuming the last (optimizer state carried over) with
its cosine schedule extended: an 850-step schedule stopped at step 500 (the held-out accuracy
was still low), extended to 1,200 steps (67% correct with the chain on 1,000 held-out problems:
below the 95% aim), then extended to 3,000 steps. `PHASES` replays exactly that by default;
`--steps N --resume` runs one more phase by hand.

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

from nnsight_codi.training.instruct import InstructConfig, instruct_report, train_instruct  # noqa: E402

RECIPE = dict(
    out="out/tiny-instruct", seed=3, test_seed=1_000_003,
    dataset="synthetic", train_size=60_000, eval_size=1000, eval_during=64,
    min_steps=2, max_steps=3, value_max=99, add_max=5, mul_max=3,
    n_layer=4, n_embd=128, n_head=4, number_init="fourier",
    direct_fraction=0.3, none_fraction=0.0,
    steps=850, batch_size=64, lr=3e-3, weight_decay=0.01, warmup_ratio=0.03,
    eval_every=200, checkpoint_every=100, log_every=25, threads=1,
)
# (schedule length, last step) of each phase of the shipped run; each phase resumes the one before
PHASES = ((850, 500), (1200, 1200), (3000, 3000))
DEST = ROOT / "nnsight_codi" / "assets" / "tiny-instruct"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=RECIPE["out"])
    p.add_argument("--seed", type=int, default=RECIPE["seed"])
    p.add_argument("--steps", type=int, default=None,
                   help="one phase with this schedule length (default: replay PHASES)")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step (schedules unchanged)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-final-eval", action="store_true")
    p.add_argument("--install", action="store_true", help="copy OUT/model into the package assets")
    args = p.parse_args(argv)

    def config(steps: int) -> InstructConfig:
        return InstructConfig(**{**RECIPE, "out": args.out, "seed": args.seed, "steps": steps})

    if args.steps is not None:  # one phase by hand
        cfg = config(args.steps)
        metrics = train_instruct(cfg, resume=args.resume, stop_at=args.stop_at)
    else:  # the shipped run, phase by phase (cut short by --stop-at)
        start = 0
        for steps, last in PHASES:
            if args.stop_at is not None and args.stop_at <= start:
                break
            cfg = config(steps)
            stop = last if args.stop_at is None else min(last, args.stop_at)
            metrics = train_instruct(cfg, resume=start > 0 or args.resume, stop_at=stop)
            start = stop
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    if not args.no_final_eval:
        report = instruct_report(cfg)
        print(json.dumps({m: {k: e[k] for k in ("accuracy", "chain_rate")} for m, e in report["modes"].items()}))
    if args.install:
        notes = (DEST / "TRAINING.md").read_text() if (DEST / "TRAINING.md").is_file() else None
        if DEST.exists():
            shutil.rmtree(DEST)
        shutil.copytree(Path(args.out) / "model", DEST)
        if notes is not None:  # the model card is ours, not the run's
            (DEST / "TRAINING.md").write_text(notes)
        print(f"installed {Path(args.out) / 'model'} -> {DEST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
