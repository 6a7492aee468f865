"""Train the shipped tiny Coconut (nnsight_codi/assets/tiny-coconut) with Coconut's stage curriculum.

    nice -n 10 python runs/train_tiny_coconut.py                 # trains into out/tiny-coconut, then reports
    nice -n 10 python runs/train_tiny_coconut.py --install       # also copies out/tiny-coconut/model to the assets
    python runs/train_tiny_coconut.py --seed 4 --out out/c4      # flags override the recipe (CoconutTrainConfig)

The shipped model is the default run plus 600 more final-stage steps from its weights
(`--init-from out/tiny-coconut/model --stage-steps 0,0,0,0,600 --lr 1e-3`; the assets' TRAINING.md).

Fixed seed → same data, init and batch order (bit-exact on the same CPU and thread count).
"""

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nnsight_codi.config_cli import parse_config  # noqa: E402
from nnsight_codi.training.coconut_curriculum import CoconutTrainConfig, final_report, train_coconut  # noqa: E402


def main(argv: list[str]) -> int:
    """Train, report held-out accuracy by K and under pause, optionally install."""
    install = "--install" in argv
    try:
        cfg = parse_config(CoconutTrainConfig, [a for a in argv if a != "--install"])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = train_coconut(cfg)
    final = final_report(Path(cfg.out) / "model", cfg)
    report["final"] = final
    (Path(cfg.out) / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(final, indent=1))
    if install:
        dest = ROOT / "nnsight_codi" / "assets" / "tiny-coconut"
        notes = (dest / "TRAINING.md").read_text() if (dest / "TRAINING.md").is_file() else None
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(Path(cfg.out) / "model", dest)
        shutil.copy(Path(cfg.out) / "report.json", dest / "report.json")
        if notes is not None:
            (dest / "TRAINING.md").write_text(notes)
        print(f"installed -> {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
