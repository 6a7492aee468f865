"""Teacher-only / short pilot runs behind the measurements table in assets/tiny-codi/TRAINING.md.

    python runs/pilot_tiny.py NAME STEPS TEACHER_WARMUP_STEPS [OVERRIDES_JSON]
    e.g. python runs/pilot_tiny.py four 400 400 '{"number_init": "fourier"}'

Trains into out/pilot-NAME (1 thread) and prints one JSON line: the teacher's CoT accuracy on 256
held-out problems (and the student's, when the teacher warm-up ends before the last step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnsight_codi.config_cli import config_from_dict
from nnsight_codi.errors import one_line_errors  # noqa: E402


@one_line_errors("pilot_tiny")
def main(argv: list[str] | None = None) -> int:
    """Command line: train one pilot run and print its accuracies as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="run name: trains into out/pilot-NAME")
    parser.add_argument("steps", type=int)
    parser.add_argument("teacher_warmup_steps", type=int)
    parser.add_argument("overrides", nargs="?", default="{}", help="TrainConfig overrides as a JSON object")
    args = parser.parse_args(argv)
    try:
        overrides = json.loads(args.overrides)
    except json.JSONDecodeError as err:
        raise ValueError(f"OVERRIDES_JSON is not valid JSON: {err}") from None

    from nnsight_codi.data.synthetic import generate_problems
    from nnsight_codi.training.report import load_trained
    from nnsight_codi.training.train_config import TrainConfig
    from nnsight_codi.training.train_evaluator import evaluate_student, evaluate_teacher
    from nnsight_codi.training.trainer import train

    out = f"out/pilot-{args.name}"
    cfg = config_from_dict(TrainConfig, {
        "out": out, "steps": args.steps, "teacher_warmup_steps": args.teacher_warmup_steps,
        "train_size": args.steps * 64 + 1000, "eval_size": 256, "eval_every": 0, "checkpoint_every": 0,
        "progress": False, "threads": 1, "num_latents": 6, "student_weight": 5.0, **overrides}, "pilot config")
    metrics = train(cfg)
    model, prj, tok, codi = load_trained(f"{out}/model")
    ids = {"pad_id": codi.pad_id, "bot_id": codi.bot_id, "eot_id": codi.eot_id, "eos_id": codi.eos_id}
    ds = generate_problems(256, seed=1000003, value_range=(0, 99), min_steps=2, max_steps=3,
                           add_range=(1, cfg.add_max), mul_range=(2, cfg.mul_max))
    questions, answers = list(ds["question"]), list(ds["answer"])
    result = {"name": args.name, "time": metrics["train_seconds"],
              "teacher_cot": evaluate_teacher(model, tok, questions, answers, ids=ids).accuracy,
              "hist": metrics["history"][-2:]}
    if args.teacher_warmup_steps < args.steps:
        result["student"] = evaluate_student(model, prj, tok, questions, answers, num_latents=6, ids=ids).accuracy
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
