"""Train the shipped tiny CODI model (nnsight_codi/assets/tiny-codi) exactly as documented.

    python runs/train_tiny.py                      # trains into out/tiny-codi, then reports
    python runs/train_tiny.py --install            # also copies out/tiny-codi/model to the package assets
    python runs/train_tiny.py --out out/s1 --seed 1   # flags after the recipe's override it

Same seed → same data, init and batch order; the step count (not wall time) fixes the
schedule, so a rerun reproduces the model (bit-exact on the same CPU and thread count).
The recipe trains on one thread (two seeds fit the 2-core machine side by side);
`OMP_WAIT_POLICY=PASSIVE` keeps OpenMP threads from spin-waiting when other processes share the
CPU (with the default policy, 2-thread steps slowed 3-8x under contention here).
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsight_codi.commands.train import main  # noqa: E402

ARGS = [
    "--out", "out/tiny-codi",
    "--seed", "3", "--test-seed", "1000003",
    "--dataset", "synthetic", "--train-size", "280000", "--eval-size", "1000",
    "--min-steps", "2", "--max-steps", "3", "--value-max", "99", "--add-max", "5", "--mul-max", "3",
    "--base", "tiny-gpt2", "--n-layer", "4", "--n-embd", "128", "--n-head", "4", "--number-init", "fourier",
    "--num-latents", "6", "--distill-weight", "1", "--student-weight", "5", "--teacher-weight", "1",
    "--teacher-warmup-steps", "1200",
    "--steps", "4200", "--batch-size", "64", "--lr", "2e-3", "--weight-decay", "0.01",
    "--eval-every", "400", "--checkpoint-every", "400", "--threads", "1",
]

if __name__ == "__main__":
    extra = [a for a in sys.argv[1:] if a != "--install"]
    code = main(ARGS + extra)
    if code == 0 and "--install" in sys.argv:
        dest = ROOT / "nnsight_codi" / "assets" / "tiny-codi"
        outs = [extra[i + 1] for i, a in enumerate(extra[:-1]) if a == "--out"]
        src = ROOT / (outs[-1] if outs else "out/tiny-codi") / "model"
        notes = (dest / "TRAINING.md").read_text() if (dest / "TRAINING.md").is_file() else None
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
        if notes is not None:  # the model card is ours, not the run's
            (dest / "TRAINING.md").write_text(notes)
        print(f"installed {src} -> {dest}")
    raise SystemExit(code)
