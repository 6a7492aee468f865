"""The studies of the demo: each is a `runs/<study>.py` definition in the source checkout.

A study module exposes `Config` (a dataclass), `demo_config() -> Config` and
`run(config, out, progress=True) -> dict` (DESIGN.md, "Studies"); `run` writes `results.json`,
`figures/*.png` and `report.md` under `out` and returns the results with a `headline` list.
`runs/` is not an installed package, so the demo imports it from the checkout root.

Example:
    >>> [s.name for s in STUDIES][:2]
    ['lens', 'steering']
    >>> [s.name for s in select_studies("attention,lens")]
    ['attention', 'lens']
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Study:
    """A demo study: its name, the module that defines it and its title."""
    name: str
    module: str
    title: str


STUDIES: tuple[Study, ...] = (
    Study("lens", "runs.lens_study", "Logit lens, tuned lens and probes on the latents"),
    Study("steering", "runs.steering_study", "Steering the latents: hidden-state and KV-cache vectors vs baselines"),
    Study("patching", "runs.patching_study", "Activation patching and thought anchors"),
    Study("attention", "runs.attention_study", "Attention across latents and the latent dashboard"),
    Study("cot_vectors", "runs.cot_vectors_study", "Chain-of-thought steering vectors (tiny instruct LM)"),
)


@dataclass
class StudyOutcome:
    """What one study's demo run produced (or why it did not)."""

    study: Study
    out: Path
    status: str  # "ok" | "failed" | "unavailable"
    seconds: float = 0.0
    headline: list[str] = field(default_factory=list)
    error: str | None = None
    summary: str = ""  # one line for a terminal: results["summary_line"], else the first headline


def select_studies(spec: str) -> list[Study]:
    """`all`, `none`, or a comma-separated list of study names."""
    if spec == "all":
        return list(STUDIES)
    if spec in ("none", ""):
        return []
    names = [s.strip() for s in spec.split(",") if s.strip()]
    known = {s.name: s for s in STUDIES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown stud{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


def checkout_root() -> Path:
    """The source checkout that holds `runs/` and `analyses/` beside the package."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "runs").is_dir() or not (root / "analyses").is_dir():
        raise FileNotFoundError(
            f"the study definitions (runs/, analyses/) are not beside the package at {root}: "
            "run the demo from a source checkout installed with `pip install -e .`")
    return root


def import_study(study: Study):
    """Import `runs.<study>` from the checkout (None when this checkout lacks it)."""
    root = str(checkout_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module(study.module)
    except ModuleNotFoundError as err:
        if err.name == study.module:
            return None
        raise


def run_study(study: Study, out: Path, progress: bool = True, overrides: dict[str, Any] | None = None) -> StudyOutcome:
    """Run `study` at demo size into `out`; failures are caught and reported, not raised."""
    start = time.perf_counter()
    try:
        module = import_study(study)
        if module is None:
            return StudyOutcome(study, out, "unavailable", error=f"{study.module} is not in this checkout")
        config = module.demo_config()
        for key, value in (overrides or {}).items():
            if hasattr(config, key):
                setattr(config, key, value)
        results = module.run(config, out, progress=progress) or {}
        headline = [str(h) for h in results.get("headline", [])]
        line = str(results.get("summary_line") or (headline[0] if headline else ""))
        return StudyOutcome(study, out, "ok", time.perf_counter() - start, headline, summary=line)
    except Exception as err:  # one study's failure must not hide the others' results
        (out / "error.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / "error.txt").write_text(traceback.format_exc())
        return StudyOutcome(study, out, "failed", time.perf_counter() - start,
                            error=f"{type(err).__name__}: {err}")


def study_main(config_cls: type, run, default_out: str, description: str | None = None,
               argv: list[str] | None = None) -> int:
    """The command line of a `runs/` study: one option per `Config` field, `--out`, `--json`.

    Prints the headline (or, with `--json`, the headline and the output paths as one JSON object);
    a user error (bad model, path, value) is one line on stderr and exit status 2.

    Example (in `runs/<study>.py`):
        if __name__ == "__main__":
            raise SystemExit(study_main(Config, run, "out/my_study", __doc__))
    """
    import argparse
    import json

    from .config_cli import add_config_args, config_kwargs
    from .errors import OneLineParser, one_line_errors

    @one_line_errors(Path(sys.argv[0]).stem)
    def main(argv: list[str] | None) -> int:
        parser = OneLineParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_args(parser, config_cls)
        parser.add_argument("--out", default=default_out, help="output directory (default: %(default)s)")
        parser.add_argument("--json", action="store_true", help="print the headline and output paths as JSON")
        args = parser.parse_args(argv)
        config = config_cls(**config_kwargs(config_cls, args))
        result = run(config, args.out)
        out = Path(args.out)
        if args.json:
            print(json.dumps({"headline": result.get("headline", []), "results": str(out / "results.json"),
                              "report": str(out / "report.md")}, indent=2))
        else:
            print("\n".join(result.get("headline", [])))
            print(f"report: {out / 'report.md'}")
        return 0

    return main(argv)
