"""A study's outputs: `results.json`, `figures/*.png`, `report.md` in one directory.

Every study (`nnsight_codi.studies`) writes the same three things, so the demo can link them:

    out/
      results.json      machine-readable: every figure's numbers, with confidence intervals, and
                        `provenance` (package version and commit, library versions, model, seed, config)
      figures/*.png     seaborn/matplotlib figures
      report.md         what was run, the headline table, the figures

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_results(out, {"accuracy": 0.5, "nan": float("nan")})
    >>> written = json.loads((out / "results.json").read_text())
    >>> written["nan"], sorted(written["provenance"])
    (None, ['config', 'git', 'model', 'package', 'python', 'seed', 'versions'])
    >>> print(markdown_table([{"name": "a", "rate": 0.12345}]))
    | name | rate |
    | --- | --- |
    | a | 0.123 |
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .models.model_sources import unambiguous_name


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars/arrays to Python, NaN/inf to null, paths to strings."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


PROVENANCE_LIBRARIES = ("torch", "transformers", "nnsight", "numpy", "xarray", "zarr", "datasets")


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def git_state(where: str | Path | None = None) -> dict[str, Any] | None:
    """`{commit, dirty}` of the git checkout holding `where` (default: this package), None when the
    package is not in a checkout (an installed wheel) or git is not available.
    """
    where = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if not Path(__file__).resolve().is_relative_to(top):  # a wheel installed inside someone else's repo
            return None
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def model_provenance(model: Any = None, spec: Any = None) -> dict[str, Any]:
    """What a result was computed with: the model spec as given, the shipped model it names (with its
    version: `tiny-instruct-v3`, never the plain name that has meant three models) and the weights'
    fingerprint (`models.fingerprint.model_weights`; None without a loaded model or for a remote one).
    """
    weights = None
    if model is not None:
        from .models.fingerprint import model_weights

        weights = model_weights(model)
        if spec is None:  # a loaded model knows the directory it came from
            lm = getattr(model, "_module", model)
            spec = getattr(getattr(lm, "config", None), "name_or_path", None)
    return {"spec": None if spec is None else str(spec), "shipped_name": unambiguous_name(spec), "weights": weights}


def provenance(config: Mapping[str, Any] | None = None, model: Any = None) -> dict[str, Any]:
    """The `provenance` block every `results.json` carries (see `write_results`).

    `config` is the run's configuration (its `seed` and `model` are lifted out); `model` the loaded model,
    for its weights' fingerprint.

    Example:
        >>> p = provenance({"model": "tiny-instruct", "seed": 3})
        >>> p["package"]["name"], p["model"]["shipped_name"], p["seed"], sorted(p["versions"])[:3]
        ('nnsight-codi', 'tiny-instruct-v3', 3, ['datasets', 'nnsight', 'numpy'])
    """
    config = dict(config or {})
    return {"package": {"name": "nnsight-codi", "version": __version__}, "git": git_state(),
            "python": platform.python_version(),
            "versions": {lib: _version(lib) for lib in PROVENANCE_LIBRARIES},
            "model": model_provenance(model, config.get("model")), "seed": config.get("seed"),
            "config": config}


def write_results(out: str | Path, results: Mapping[str, Any], model: Any = None, record: bool = True) -> Path:
    """Write `out/results.json` (NaN as null) with its `provenance` block; return its path.

    The block (`provenance(results["config"], model)`) is computed now unless `results` carries one
    already (a study re-rendered from its old results keeps the provenance of the run that made them);
    `record=False` adds none (results re-rendered from before provenance existed: their run is unknown,
    and today's versions would be wrong). `model` is the loaded model the results came from, for its
    weights' fingerprint.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    if record and "provenance" not in results:
        results = {**results, "provenance": provenance(results.get("config"), model)}
    path.write_text(json.dumps(_clean(results), indent=2, allow_nan=False) + "\n")
    return path


def figures_dir(out: str | Path) -> Path:
    """`out/figures`, created if missing."""
    path = Path(out) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig, out: str | Path, name: str, dpi: int = 130) -> Path:
    """Save a matplotlib figure as `out/figures/<name>.png`, close it, return the path."""
    import matplotlib.pyplot as plt

    path = figures_dir(out) / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """Rows of dicts as a GitHub markdown table (floats rounded to `digits`)."""
    if not rows:
        return "_(no rows)_"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_cell(r.get(c, ""), digits) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _relative(path: Path, out: Path) -> str:
    """`path` as a link from `out/report.md` (relative when it lies under `out`)."""
    path, root = path.resolve(), out.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def write_report(out: str | Path, title: str, sections: Iterable[tuple[str, str]],
                 figures: Iterable[str | Path] = (), config: Mapping[str, Any] | None = None,
                 closing: Iterable[tuple[str, str]] = ()) -> Path:
    """Write `out/report.md`: the title, the config that was run, the sections, the figures, and the
    `closing` sections (the comparison with the source ends every study's report).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}\n"]
    if config is not None:
        parts.append("## Configuration\n\n```json\n" + json.dumps(_clean(config), indent=2) + "\n```\n")
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body.strip()}\n")
    figures = [Path(f) for f in figures]
    if figures:
        parts.append("## Figures\n\n" + "\n\n".join(
            f"![{f.stem}]({_relative(f, out)})" for f in figures) + "\n")
    for heading, body in closing:
        parts.append(f"## {heading}\n\n{body.strip()}\n")
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path


def write_study(out: str | Path, study: Any, results: dict[str, Any],
                figures: Iterable[str | Path] | None = None, headline: bool = True, model: Any = None) -> Path:
    """A study's `results.json` and `report.md`, written the one way every study writes them.

    `study` is the study's `analyses/` module (the study template): `TITLE`, `headline(results)`,
    `report_sections(results)`, `compare_with_source(results)` and optionally `summary_line(results)`.
    The headline, the summary line and the "Compared with the source" rows are (re)computed from
    `results` and stored in it; the report's configuration block is `results["config"]`, its figures
    `results["figures"]` unless `figures` is given; `headline=False` keeps the headline `results` holds
    (re-rendering a study written by an older version). `model` is the loaded model, whose weights'
    fingerprint goes into `results["provenance"]` (`write_results`). Returns the report's path.
    """
    if headline:
        results["headline"] = study.headline(results)
    if headline and hasattr(study, "summary_line"):
        results["summary_line"] = study.summary_line(results)
    results["compared_with_source"] = study.compare_with_source(results)
    if headline and "provenance" not in results:  # re-rendered old results keep theirs (or none), not now's
        results["provenance"] = provenance(results.get("config"), model)
    write_results(out, results, record=headline)
    return write_report(out, study.TITLE, study.report_sections(results),
                        figures=results.get("figures", []) if figures is None else figures,
                        config=results.get("config"), closing=[comparison_section(results["compared_with_source"])])


VERDICTS = ("agree", "differ", "inconclusive", "not comparable")
COMPARISON_HEADING = "Compared with the source"
MIN_N = 30
"""Fewer examples than this give no verdict: a percentile bootstrap CI over so few is not evidence."""


def verdict(ci_low: float | None, ci_high: float | None, above: float | None = None, below: float | None = None,
            n: int | None = None) -> str:
    """The one verdict rule of every "Compared with the source" row, the same at every n.

    The source claims the quantity lies above `above` (or below `below`). With its 95% CI
    `[ci_low, ci_high]`: **agree** when the whole CI is on the claim's side, **differ** when the whole
    CI is on the other side, **inconclusive** when the CI spans the boundary, is unknown, or rests
    on fewer than `MIN_N` examples.

    Example:
        >>> verdict(0.03, 0.60, above=0.0, n=200), verdict(-0.1, 0.4, above=0.0, n=200), verdict(0.03, 0.6, above=0, n=12)
        ('agree', 'inconclusive', 'inconclusive')
        >>> verdict(0.2, 0.3, below=0.5, n=300), verdict(0.6, 0.7, below=0.5, n=300)
        ('agree', 'differ')
    """
    if (above is None) == (below is None):
        raise ValueError("give the claim's boundary as exactly one of above= or below=")
    if ci_low is None or ci_high is None or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "inconclusive"
    if n is not None and n < MIN_N:
        return "inconclusive"
    if above is not None:
        return "agree" if ci_low > above else "differ" if ci_high <= above else "inconclusive"
    assert below is not None
    return "agree" if ci_high < below else "differ" if ci_low >= below else "inconclusive"


VERDICT_RULE = (f"Verdicts follow one rule at every n: agree when the whole 95% CI lies on the claim's side of its "
                f"boundary, differ when it lies wholly on the other side, inconclusive when it spans the boundary or "
                f"rests on fewer than {MIN_N} examples.")


def source_row(source: str, claim: str, ours: str, baseline: str, verdict: str, reason: str) -> dict[str, str]:
    """One row of a study's "Compared with the source" table (kept in `results.json` under
    `compared_with_source`, rendered by `comparison_section`): the post's claim in one line, our
    measurement with its CI, its baseline, and agree / differ / not comparable with the reason.

    Example:
        >>> source_row("post", "values at latents 3, 5", "latent 1", "chance 2%", "differ", "another model")["verdict"]
        'differ'
    """
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"source": source, "claim": claim, "ours": ours, "baseline": baseline, "verdict": verdict,
            "reason": reason}


REFERENCES = {
    # a row's source begins with the key; the CODI paper is cited in every report (every study runs a CODI model)
    "CODI": 'Shen et al. 2025, "CODI: Compressing Chain-of-Thought into Continuous Space via Self-Distillation", '
            "[arXiv:2502.21074](https://arxiv.org/abs/2502.21074); code: "
            "[zhenyi4/CODI](https://github.com/zhenyi4/CODI)",
    "Cywiński": 'Cywiński, Bussmann et al. 2025, "Can we interpret latent reasoning…" (Alignment Forum / LessWrong '
                "post, CODI-Llama-1B); code: [cywinski/codi](https://github.com/cywinski/codi)",
    "Scratchpad Thinking": 'Goyal et al. 2025, "Scratchpad Thinking: Alternation Between Storage and Computation in '
                           'Latent Reasoning Models" (NeurIPS 2025 Mech-Interp workshop), '
                           "[openreview EV30qkZXrR](https://openreview.net/forum?id=EV30qkZXrR); code: "
                           "[sayam-goyal/Scratchpad-Thinking](https://github.com/sayam-goyal/Scratchpad-Thinking)",
    "Zhang & Viteri": 'Zhang & Viteri 2024, "Uncovering Latent Chain of Thought Vectors in Language Models", '
                      "[arXiv:2409.14026](https://arxiv.org/abs/2409.14026)",
}
"""Full citations with links, by the short name the report rows use."""


def references(rows: Sequence[Mapping[str, str]]) -> list[str]:
    """The citations of the sources `rows` name, the CODI paper first.

    Example:
        >>> [r[:22] for r in references([{"source": "Zhang & Viteri 2024 (CoT vectors)"}])]
        ['Shen et al. 2025, "COD', 'Zhang & Viteri 2024, "']
    """
    keys = ["CODI", *(k for k in REFERENCES if k != "CODI" and any(str(r.get("source", "")).startswith(k)
                                                                   for r in rows))]
    return [REFERENCES[k] for k in keys]


def comparison_section(rows: Sequence[Mapping[str, str]]) -> tuple[str, str]:
    """The closing section of a report, from `results["compared_with_source"]` (no numbers of its own)."""
    body = ("Each row: the source's claim in one line, our measurement on the same footing (95% bootstrap CI), "
            "its baseline, and whether they agree. " + VERDICT_RULE + " The sources are cited, with links, "
            "below the table. Generated from `results.json` (`compared_with_source`).\n\n"
            + markdown_table([{"source": r["source"], "claim": r["claim"], "ours (95% CI)": r["ours"],
                               "baseline": r["baseline"], "verdict": r["verdict"], "why": r["reason"]}
                              for r in rows])
            + "\n\nReferences:\n\n" + "\n".join(f"- {ref}" for ref in references(rows)))
    return COMPARISON_HEADING, body
