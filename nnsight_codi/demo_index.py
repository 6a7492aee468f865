"""`out/demo/index.html`: one static page linking every study's report, figures and the dashboard.

Self-contained (inline CSS, no scripts, no network); figures are linked relative to the page so
the directory can be copied or served as is. Each study's `report.md` is also rendered to
`report.html` beside it (python-markdown) so a browser shows it formatted.

Example:
    >>> html = render_index({"model": "tiny", "accuracy": 0.9}, [], [])     # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import markdown

from .studies import StudyOutcome

CSS = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4} code{background:#f4f4f4;padding:0 3px}
section{border:1px solid #e3e3e3;border-radius:8px;padding:.6em 1.2em;margin:1.2em 0}
.ok{color:#1a7f37} .failed{color:#c0362c} .unavailable{color:#888}
.figs{display:flex;flex-wrap:wrap;gap:10px} .figs a img{height:180px;border:1px solid #ddd;border-radius:4px}
pre{white-space:pre-wrap;background:#fafafa;padding:.5em}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def render_report_html(report_md: Path) -> Path:
    """Render `report.md` to `report.html` beside it (tables and code blocks kept)."""
    body = markdown.markdown(report_md.read_text(), extensions=["tables", "fenced_code"])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(report_md.parent.name)}</title>"
            f"<style>{CSS} img{{max-width:100%}}</style></head><body>{body}</body></html>")
    path = report_md.with_suffix(".html")
    path.write_text(page)
    return path


def _link(path: Path, root: Path, label: str) -> str:
    return f"<a href='{_e(path.relative_to(root).as_posix())}'>{_e(label)}</a>" if path.exists() else ""


def _study_section(outcome: StudyOutcome, root: Path) -> str:
    out = outcome.out
    parts = [f"<section id='{_e(outcome.study.name)}'><h2>{_e(outcome.study.title)}</h2>",
             f"<p class='{outcome.status}'>{_e(outcome.status)}"
             + (f" in {outcome.seconds:.0f} s" if outcome.status == "ok" else "") + "</p>"]
    if outcome.headline:
        parts.append("<ul>" + "".join(f"<li>{_e(h)}</li>" for h in outcome.headline) + "</ul>")
    if outcome.error:
        parts.append(f"<pre>{_e(outcome.error)}</pre>")
    report = out / "report.md"
    links = []
    if report.exists():
        links.append(_link(render_report_html(report), root, "report"))
        links.append(_link(report, root, "report.md"))
    links.append(_link(out / "results.json", root, "results.json"))
    dashboard = out / "dashboard" / "index.html"
    links.append(_link(dashboard, root, "latent dashboard"))
    links = [l for l in links if l]
    if links:
        parts.append("<p>" + " · ".join(links) + "</p>")
    figures = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    if figures:
        parts.append("<div class='figs'>" + "".join(
            f"<a href='{_e(f.relative_to(root).as_posix())}'><img src='{_e(f.relative_to(root).as_posix())}' "
            f"alt='{_e(f.stem)}' title='{_e(f.stem)}'></a>" for f in figures) + "</div>")
    parts.append("</section>")
    return "\n".join(parts)


def _core_section(summary: Mapping[str, Any], worked: Sequence[Mapping[str, Any]]) -> str:
    k = summary.get("num_latents")
    n, writes = summary.get("n"), summary.get("k0_free_writes_cot")
    cis = summary.get("accuracy_ci") or {}
    rows = [(f"with its {k} latents", "accuracy", ""),
            ("0 latents, answering directly", "accuracy_k0", ""),
            ("0 latents, room to write more", "accuracy_k0_free",
             f"{writes / n:.1%} of answers write a chain of thought ('<<')" if writes is not None and n else "")]

    def cell(key: str) -> str:
        ci = cis.get(key)
        return f"{summary[key]:.1%}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    table = "".join(f"<tr><td>{_e(name)}</td><td>{cell(key)}</td><td>{_e(note)}</td></tr>"
                    for name, key, note in rows if summary.get(key) is not None)
    parts = ["<section id='core'><h2>The tiny CODI: accuracy and worked examples</h2>",
             f"<p>{_e(summary.get('n'))} held-out synthetic problems; model <code>{_e(summary.get('model'))}</code>.</p>",
             f"<table><tr><th>condition</th><th>accuracy [95% CI]</th><th>note</th></tr>{table}</table>"]
    if worked:  # the lens study's worked examples (its results.json's `worked_examples`)
        head = "<tr><th>question</th><th>gold</th><th>correct</th><th>logit lens per step (top-1 @ layer)</th></tr>"
        body = "".join(_worked_row(w) for w in worked)
        parts.append("<h3>Worked examples</h3><p>From the <a href='#lens'>lens study</a>: each step's read-out at "
                     f"the layer where the study found chain values most often.</p><table>{head}{body}</table>")
    parts.append("<p><a href='eval/predictions.jsonl'>predictions</a> · <a href='summary.json'>summary.json</a> · "
                 "activation store <code>capture.zarr</code> (<code>nnsight-codi info</code>)</p></section>")
    return "\n".join(parts)


def _worked_row(example: Mapping[str, Any]) -> str:
    """One table row of a lens-study worked example: question, gold, correct, each step's top-1 token @ layer."""
    correct, gold = example.get("correct"), f"{example['answer']:g}"
    steps = " ".join(f"{_e(e['step_name'])}→<code>{_e(e['tokens'][0] if e['tokens'] else '')}</code>"
                     f"<small>@L{e['layer']}</small>" for e in example["steps"])
    return (f"<tr><td>{_e(example['question'])}</td><td>{_e(gold)}</td>"
            f"<td>{'' if correct is None else ('yes' if correct else 'no')}</td><td>{steps}</td></tr>")


def write_index(root: Path, summary: Mapping[str, Any], worked: Sequence[Mapping[str, Any]],
                outcomes: Sequence[StudyOutcome]) -> Path:
    """Write `root/index.html` and return its path."""
    nav = " · ".join(f"<a href='#{_e(o.study.name)}'>{_e(o.study.name)}</a>" for o in outcomes)
    page = ["<!doctype html><html><head><meta charset='utf-8'><title>nnsight-codi demo</title>",
            f"<style>{CSS}</style></head><body>",
            "<h1>nnsight-codi demo</h1><p class='sub'>Every study of the framework on the shipped tiny models, "
            "at demo size (small n: read the intervals, not the points).</p>",
            f"<p>{nav}</p>" if nav else "",
            _core_section(summary, worked)]
    page += [_study_section(o, root) for o in outcomes]
    page.append("</body></html>")
    path = root / "index.html"
    path.write_text("\n".join(page))
    return path
