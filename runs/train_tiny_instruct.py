"""Train the shipped tiny instruct models exactly as documented (their TRAINING.md).

    python runs/train_tiny_instruct.py                  # v3: warm start from tiny-instruct-v2, carried modes
    python runs/train_tiny_instruct.py --install        # also copies out/tiny-instruct/model to the assets
    python runs/train_tiny_instruct.py --version v2 --out out/tiny-instruct-v2   # the second model
    python runs/train_tiny_instruct.py --version v1 --out out/tiny-instruct-v1   # the first model, from scratch
    python runs/train_tiny_instruct.py --out out/repro --stop-at 25 --no-final-eval   # reproduce the start

**v3** (`tiny-instruct`, shipped): continues `tiny-instruct-v2` for `RECIPE["steps"]` steps with
the v2 paraphrases plus 6 + 6 negated ones (`training.paraphrases.COT_NEGATED` /
`DIRECT_NEGATED`), and `carry_fraction` of the problems trained as "the reply keeps the mode
its first token chose" (the other mode's reply, its first token given in the context, not
trained): the instruction decides the first reply token, the reply so far decides the rest.

**v2** (`tiny-instruct-v2`): continues `tiny-instruct-v1` (its weights and tokenizer; the
paraphrases' new words appended to the vocabulary) on the same problem generator, each problem
asked with one of 26 + 26 trained instruction paraphrases (`training.paraphrases`) or with none
(then trained to answer directly); 6 + 6 held-out paraphrases are recorded and measured, never
trained. Two phases (`PHASES_V2`): a 1,200-step cosine schedule stopped at step 100, resumed with
the schedule shortened to 800 steps.

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

from nnsight_codi.training.instruct_training import (  # noqa: E402
    InstructConfig,
    train_instruct,
)
from nnsight_codi.training.paraphrases import (  # noqa: E402
    COT_HELDOUT,
    COT_NEGATED,
    COT_TRAIN,
    DIRECT_HELDOUT,
    DIRECT_NEGATED,
    DIRECT_TRAIN,
)
from nnsight_codi.training.report import (  # noqa: E402
    carry_report,
    instruct_report,
    paraphrase_report,
)

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
RECIPE_V2 = {**RECIPE_V1,
             "out": "out/tiny-instruct-v2", "seed": 4, "init_from": str(ASSETS / "tiny-instruct-v1"),
             "cot_instructions": COT_TRAIN, "direct_instructions": DIRECT_TRAIN,
             "heldout_cot_instructions": COT_HELDOUT, "heldout_direct_instructions": DIRECT_HELDOUT,
             "direct_fraction": 0.35, "none_fraction": 0.15, "none_reply": "direct",
             "steps": 1200, "lr": 1e-3, "warmup_ratio": 0.03, "eval_every": 400, "checkpoint_every": 100}
# (schedule length, last step) of each phase of the v2 run: a 1,200-step schedule stopped at
# step 100 (the shared CPU ran at ~2-4 s/step), resumed with the schedule shortened to 800 steps
PHASES_V2 = ((1200, 100), (800, 800))
RECIPE = {**RECIPE_V2,
          "out": "out/tiny-instruct", "seed": 5, "init_from": str(ASSETS / "tiny-instruct-v2"),
          "cot_instructions": COT_TRAIN + COT_NEGATED, "direct_instructions": DIRECT_TRAIN + DIRECT_NEGATED,
          "carry_fraction": 0.25, "steps": 600, "eval_every": 200}
# the shipped v3 run: one phase
PHASES = ((600, 600),)
VERSIONS = {"v1": (RECIPE_V1, PHASES_V1), "v2": (RECIPE_V2, PHASES_V2), "v3": (RECIPE, PHASES)}


def main(argv: list[str] | None = None) -> int:
    """Command line: train (and optionally report on and install) a tiny instruct model."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", choices=sorted(VERSIONS), default="v3",
                   help="which model's recipe: v3 (shipped as tiny-instruct), v2 or v1 (default: v3)")
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--steps", type=int, default=None,
                   help="one phase with this schedule length (default: replay the recipe's phases)")
    p.add_argument("--stop-at", type=int, default=None, help="stop after this step (schedules unchanged)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-final-eval", action="store_true")
    p.add_argument("--report-only", action="store_true", help="the final reports of OUT/model, no training")
    p.add_argument("--report-size", type=int, default=None, help="problems per instruction of the final report")
    p.add_argument("--carry-fraction", type=float, default=None,
                   help="override the recipe's carry_fraction (the ablation in TRAINING.md: 0)")
    p.add_argument("--install", action="store_true", help="copy OUT/model into the package assets")
    args = p.parse_args(argv)
    recipe, phases = VERSIONS[args.version]
    out = args.out or recipe["out"]
    seed = recipe["seed"] if args.seed is None else args.seed

    def config(steps: int) -> InstructConfig:
        carry = {} if args.carry_fraction is None else {"carry_fraction": args.carry_fraction}
        return InstructConfig(**{**recipe, "out": out, "seed": seed, "steps": steps, **carry})

    if args.report_only:
        cfg = config(phases[-1][0])
    elif args.steps is not None:  # one phase by hand
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
    if not args.report_only:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}))
    if not args.no_final_eval:
        report = instruct_report(cfg, size=args.report_size)
        print(json.dumps({m: {k: e[k] for k in ("accuracy", "chain_rate")} for m, e in report["modes"].items()}))
        if args.version != "v1":
            para = paraphrase_report(cfg, size=args.report_size)
            print(json.dumps(para["families"]))
            carry = carry_report(cfg, size=args.report_size)
            print(json.dumps([{k: c[k] for k in ("prompt", "first_token", "accuracy", "chain_rate", "mean_steps")}
                              for c in carry["cases"]]))
    if args.install:
        dest = ASSETS / ("tiny-instruct" if args.version == "v3" else f"tiny-instruct-{args.version}")
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
