"""The studies of the demo, and the public API to add one: `register_study` or an entry point.

A study is any module (or object) that exposes `Config` (a dataclass), `demo_config() -> Config`
and `run(config, out, progress=True) -> dict`; `run` writes `results.json` (with
`nnsight_codi.reporting.write_study` or `write_results`), `figures/*.png` and `report.md` under
`out` and returns the results with a `headline` list. The five built-in studies live in the
`runs` package (installed with the wheel beside `nnsight_codi` and `analyses`).

A study written anywhere (a script, a notebook, another package) joins the demo in one of two ways:

- in-process: `register_study("name", module_or_object)`, then `nnsight-codi demo --studies name`
  from Python (`nnsight_codi.cli.main([...])`) or `run_study(get_study("name"), out)`;
- installed: an entry point in the group `nnsight_codi.studies` of the package that defines it,
  named after the study; `nnsight-codi demo` finds it without any import by the user::

      [project.entry-points."nnsight_codi.studies"]
      my_study = "my_package.my_study"          # a module, or "my_package.my_study:STUDY"

Example:
    >>> [s.name for s in STUDIES][:2]
    ['lens', 'steering']
    >>> [s.name for s in select_studies("attention,lens")]
    ['attention', 'lens']
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .config_cli import add_config_args, config_kwargs
from .errors import OneLineParser, one_line_errors

ENTRY_POINT_GROUP = "nnsight_codi.studies"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Study:
    """A demo study: its name, where it is defined and its title.

    `module` is a dotted module name (`runs.lens_study`), optionally `module:attribute` for an
    object inside it; `definition`, when set, is the study object itself (a registered study) and
    `module` only says where it came from. `expected_seconds` is its demo-size duration on a 2-core
    CPU (shown before it runs; None when unknown).
    """

    name: str
    module: str
    title: str
    expected_seconds: float | None = None
    definition: Any = field(default=None, compare=False, repr=False)


# Expected demo-size durations on the 2-core CPU machine (torch CPU, machine otherwise quiet), rounded up from one
# measured demo run (lens 29 s, steering 16 s, patching 7 s, attention 7 s, cot_vectors 12 s; whole demo 86 s).
STUDIES: tuple[Study, ...] = (
    Study("lens", "runs.lens_study", "Logit lens, tuned lens and probes on the latents", 30),
    Study("steering", "runs.steering_study", "Steering the latents: hidden-state and KV-cache vectors vs baselines",
          20),
    Study("patching", "runs.patching_study", "Activation patching and thought anchors", 10),
    Study("attention", "runs.attention_study", "Attention across latents and the latent dashboard", 10),
    Study("cot_vectors", "runs.cot_vectors_study", "Chain-of-thought steering vectors (tiny instruct LM)", 15),
)

_REGISTERED: dict[str, Study] = {}


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


def _check_definition(name: str, definition: Any) -> None:
    """A study object must have callable `demo_config` and `run` (one-line ValueError otherwise)."""
    missing = [attr for attr in ("demo_config", "run") if not callable(getattr(definition, attr, None))]
    if missing:
        raise ValueError(f"study {name!r}: {definition!r} has no callable {' or '.join(missing)} "
                         "(a study exposes Config, demo_config() and run(config, out, progress=True))")


def _title_of(definition: Any, name: str) -> str:
    doc = (getattr(definition, "__doc__", None) or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else name


def register_study(name: str, definition: Any, title: str | None = None, *,
                   expected_seconds: float | None = None, replace: bool = False) -> Study:
    """Make `definition` a study the demo can run, under `name`; return its `Study`.

    `definition` is a module or any object with `demo_config()` and `run(config, out, progress=True)`
    (a `Config` dataclass beside them is the convention: the demo sets its fields `model` etc.), or
    the dotted name of one (`"my_pkg.my_study"`, `"my_pkg.my_study:STUDY"`, imported when run).
    `title` defaults to the first line of its docstring. A name already taken (built-in, entry point
    or registered) is a ValueError unless `replace=True`.

    Example (a complete study, defined and run outside the repository):
        >>> import dataclasses, json, tempfile, types
        >>> from pathlib import Path
        >>> from nnsight_codi.reporting import write_results, write_report
        >>> @dataclasses.dataclass
        ... class Config:
        ...     n: int = 1000
        >>> def run(config, out, progress=True):
        ...     results = {"config": dataclasses.asdict(config), "sum": sum(range(config.n)),
        ...                "headline": [f"sum of 0..{config.n - 1}"]}
        ...     write_results(out, results)
        ...     write_report(out, "Sums", [("Result", str(results["sum"]))], config=results["config"])
        ...     return results
        >>> study = types.SimpleNamespace(Config=Config, demo_config=lambda: Config(n=4), run=run,
        ...                               __doc__="Sums of the first integers.")
        >>> register_study("sums", study, expected_seconds=1)
        Study(name='sums', module='<registered>', title='Sums of the first integers', expected_seconds=1)
        >>> [s.name for s in select_studies("sums,lens")]
        ['sums', 'lens']
        >>> out = Path(tempfile.mkdtemp())
        >>> outcome = run_study(get_study("sums"), out / "sums", progress=False)
        >>> outcome.status, outcome.headline, json.loads((out / "sums" / "results.json").read_text())["sum"]
        ('ok', ['sum of 0..3'], 6)
        >>> unregister_study("sums")
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"study name {name!r}: use lower-case letters, digits and '_', starting with a letter")
    if name in ("all", "none"):
        raise ValueError(f"study name {name!r} is reserved (--studies all / none)")
    if not replace and name in {s.name for s in all_studies()}:
        raise ValueError(f"a study named {name!r} exists already; pass replace=True to replace it")
    if isinstance(definition, str):
        study = Study(name, definition, title or name, expected_seconds)
    else:
        _check_definition(name, definition)
        study = Study(name, getattr(definition, "__name__", "<registered>") if isinstance(
            definition, type(sys)) else "<registered>", title or _title_of(definition, name), expected_seconds,
            definition)
    _REGISTERED[name] = study
    return study


def unregister_study(name: str) -> None:
    """Forget a study added by `register_study` (KeyError if none was registered under `name`)."""
    del _REGISTERED[name]


def entry_point_studies() -> list[Study]:
    """The studies that installed packages declare in the entry-point group `nnsight_codi.studies`."""
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if _NAME.match(ep.name) and ep.name not in ("all", "none"):
            found.append(Study(ep.name, ep.value, ep.name))
    return sorted(found, key=lambda s: s.name)


def all_studies() -> list[Study]:
    """Every study the demo can run: the built-in ones, then entry points, then registered ones.

    A registered study replaces an entry point or a built-in of the same name (`replace=True`).
    """
    by_name: dict[str, Study] = {s.name: s for s in STUDIES}
    for study in entry_point_studies():
        by_name.setdefault(study.name, study)
    by_name.update(_REGISTERED)
    return list(by_name.values())


def get_study(name: str) -> Study:
    """The study called `name` (ValueError naming the known ones otherwise)."""
    return select_studies(name)[0]


def select_studies(spec: str) -> list[Study]:
    """`all` (every study of `all_studies`), `none`, or a comma-separated list of study names."""
    studies = all_studies()
    if spec == "all":
        return studies
    if spec in ("none", ""):
        return []
    names = [s.strip() for s in spec.split(",") if s.strip()]
    known = {s.name: s for s in studies}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown stud{'y' if len(unknown) == 1 else 'ies'} {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


def import_study(study: Study):
    """The object that defines `study`: its registered definition, else its module (or
    `module:attribute`) imported; None when the module itself is not installed.
    """
    if study.definition is not None:
        return study.definition
    module_name, _, attribute = study.module.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            return None
        raise
    definition = module
    for part in attribute.split(".") if attribute else ():
        definition = getattr(definition, part)
    _check_definition(study.name, definition)
    return definition


def run_study(study: Study, out: Path, progress: bool = True, overrides: dict[str, Any] | None = None) -> StudyOutcome:
    """Run `study` at demo size into `out`; failures are caught and reported, not raised."""
    start = time.perf_counter()
    try:
        module = import_study(study)
        if module is None:
            return StudyOutcome(study, out, "unavailable", error=f"{study.module} is not installed")
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
