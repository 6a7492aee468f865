"""The CoT-vector study's test conditions for several models side by side (from their results.json).

    python runs/cot_vectors_models.py v2=runs/cot_vectors_study_v2/results.json \\
        v1=runs/cot_vectors_study_v1/results.json --out runs/cot_vectors_models.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def comparison_markdown(studies: dict[str, dict]) -> str:
    from analyses.cot_vectors import model_comparison

    table = model_comparison(studies)
    pct = (lambda v: "" if v is None or v != v else f"{100 * v:.1f}")
    lines = ["| model | condition | layer, c | accuracy % [95% CI] | writes a chain % | share of the gap recovered % [95% CI] | n |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        where = "" if r["layer"] is None or r["layer"] != r["layer"] else f"{int(r['layer'])}, {r['coef']:g}"
        gap = "" if r["gap_recovered"] is None or r["gap_recovered"] != r["gap_recovered"] else (
            f"{pct(r['gap_recovered'])} [{pct(r['gap_ci_low'])}, {pct(r['gap_ci_high'])}]")
        lines.append(f"| {r['model']} | {r['condition']} | {where} | {pct(r['accuracy'])} [{pct(r['ci_low'])}, "
                     f"{pct(r['ci_high'])}] | {pct(r['writes_chain'])} | {gap} | {r['n']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("studies", nargs="+", help="LABEL=path/to/results.json")
    p.add_argument("--out", default=None, help="write the markdown table here (default: print it)")
    args = p.parse_args(argv)
    studies = {}
    for spec in args.studies:
        label, _, path = spec.partition("=")
        if not path:
            print(f"cot_vectors_models: give LABEL=PATH, got {spec!r}", file=sys.stderr)
            return 2
        studies[label] = json.loads(Path(path).read_text())
    text = comparison_markdown(studies)
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
