r"""The CoT-vector study's test conditions for several models side by side (from their results.json).

python runs/cot_vectors_models.py "tiny-instruct (v3)=results/cot_vectors_v3/results.json" \
        "v3, last-prompt vector=results/cot_vectors_v3_last_prompt/results.json" \
        "v3 without carried modes=results/cot_vectors_v3_nocarry/results.json" \
        "v3 without carried modes, last-prompt vector=results/cot_vectors_v3_nocarry_last_prompt/results.json" \
        "tiny-instruct-v2=results/cot_vectors_v2/results.json" \
        "tiny-instruct-v1=results/cot_vectors_v1/results.json" --out results/cot_vectors_models.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def comparison_markdown(studies: dict[str, dict]) -> str:
    """The markdown table comparing the models' CoT-vector test conditions."""
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


DIFFERENCES = """## What differs from the paper's models

Zhang & Viteri steer Llama-3-8B-Instruct and Mistral-7B-Instruct-v0.2 (32 layers, 7-8B parameters,
pre-trained on web text, instruction-tuned with RLHF, reasoning on GSM8K, MMLU, ARC, AGI-Eval). The
tiny instruct models here have 4 layers and 1M parameters, were trained from scratch by supervised
cross-entropy on one family of 2-3-step arithmetic word problems with exactly two output formats
(a `<< a op b = c >>` chain or the answer alone), and follow 2 (v1), 52 (v2) or 64 (v3) instruction
strings. Their direct prompt already solves about half the problems, their chains are 2.4 steps
long (one step missing loses the answer), and any "reason step by step" feature has at most three
blocks between the instruction's tokens and the output. v3 was also trained, on a quarter of its
problems, to continue a reply in the mode its first token chose whatever the instruction says
(`carry_fraction`); whether the paper's models carry a begun chain that way was not measured here.
The planted-signal check (`tests/cot/test_planted_signal.py`) shows the extraction and steering
code recovers and uses a mode direction where one exists by construction.
"""


def comparison_report(studies: dict[str, dict]) -> str:
    """The side-by-side table with its title, a legend and the differences from the paper's models."""
    legend = ("Test conditions of each model's CoT-vector study (the grid points were selected on dev problems "
              "only). `accuracy`: share of test questions answered correctly; `writes a chain`: share of outputs "
              "with at least one `a op b = c` step; `share of the gap recovered`: (steered − direct) / "
              "(CoT prompt − direct) accuracy, bootstrap CI over questions; `random-*`: a random direction with "
              "the vector's norm at the same point; `none*`: the question without instruction, unsteered and "
              "steered.")
    return f"# CoT vectors on the tiny instruct models, side by side\n\n{legend}\n\n" + \
        comparison_markdown(studies) + "\n" + DIFFERENCES


def main(argv: list[str] | None = None) -> int:
    """Command line: read LABEL=results.json studies, print (and optionally write) the comparison."""
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
        try:
            studies[label] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"cot_vectors_models: cannot read {path}: {err}", file=sys.stderr)
            return 2
    text = comparison_report(studies)
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
