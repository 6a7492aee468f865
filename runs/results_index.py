"""Write `results/index.md`: one row per committed result directory (study, model, n, headline, link).

    python runs/results_index.py            # rewrite results/index.md
    python runs/results_index.py --check    # exit 1 if it is out of date (the tests run this)

The model column is the result's `provenance.model.shipped_name` (written by
`nnsight_codi.reporting.write_results` since provenance exists). Results written before then name
the model as it was called at the time; `LEGACY_MODELS` says which shipped model that was
(`tiny-instruct` meant v1 until 2026-12-06 02:31 UTC, v2 until 06:46 UTC, v3 since), from the
commit that added each directory and the weights shipped at that commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
LEGACY_MODELS = {
    # directory: (shipped model, how we know)
    "cot_vectors_v1": ("tiny-instruct-v1", "config names it"),
    "cot_vectors_v1_500": ("tiny-instruct-v1", "run 2026-11-23 when `tiny-instruct` was v1 (config says tiny-instruct)"),
    "cot_vectors_v1_500_last_prompt": ("tiny-instruct-v1",
                                       "run 2026-11-23 when `tiny-instruct` was v1 (config says tiny-instruct)"),
    "cot_vectors_v2": ("tiny-instruct-v2", "config names it"),
    "cot_vectors_v2_last_prompt": ("tiny-instruct-v2",
                                   "committed with v2 (4f44c5f) when `tiny-instruct` was v2 (config says tiny-instruct)"),
    "cot_vectors_v2_seed2": ("tiny-instruct-v2", "config names it"),
    "cot_vectors_v3": ("tiny-instruct-v3", "config says tiny-instruct, v3 since 5722870"),
    "cot_vectors_v3_seed2": ("tiny-instruct-v3", "config says tiny-instruct, v3 since 5722870"),
    "cot_vectors_v3_last_prompt": ("tiny-instruct-v3", "config says tiny-instruct, v3 since 5722870"),
    "cot_vectors_v3_last_prompt_seed2": ("tiny-instruct-v3", "config says tiny-instruct, v3 since 5722870"),
    "cot_vectors_v3_fine_coefs_generated": ("tiny-instruct-v3", "config says tiny-instruct, v3 since 5722870"),
    "cot_vectors_v3_fine_coefs_last_prompt": ("tiny-instruct-v3", "config says tiny-instruct, v3 since 5722870"),
    "cot_vectors_v3_nocarry": ("v3 ablation without carried modes (not shipped)",
                               "config says out/tiny-instruct-nocarry/model"),
    "cot_vectors_v3_nocarry_last_prompt": ("v3 ablation without carried modes (not shipped)",
                                           "config says out/tiny-instruct-nocarry/model"),
    "train_tiny_instruct_v2": ("tiny-instruct-v2", "the training run of v2"),
    "train_tiny_instruct_v3": ("tiny-instruct-v3", "the training run of v3"),
    "train_tiny_instruct_v3_nocarry": ("v3 ablation without carried modes (not shipped)", "the ablation's training run"),
    "lens_1000": ("tiny", "config names it; tiny CODI unchanged since 2026-11-22 (d3ff504)"),
    "steering_1000": ("tiny", "config names it; tiny CODI unchanged since 2026-11-22 (d3ff504)"),
    "steering_300": ("tiny", "config names it; tiny CODI unchanged since 2026-11-22 (d3ff504)"),
}


def _study(name: str) -> str:
    for prefix in ("cot_vectors", "train_tiny_instruct", "lens", "steering", "patching", "attention"):
        if name.startswith(prefix):
            return prefix
    return name


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _training_row(path: Path) -> tuple[Any, str]:
    report = json.loads((path / "report.json").read_text())
    modes = report["modes"]
    parts = [f"{m} {modes[m]['accuracy']:.1%} (chains {modes[m]['chain_rate']:.0%})" for m in modes]
    return report["n"], f"held-out accuracy by instruction: {', '.join(parts)}"


def rows() -> list[dict[str, str]]:
    """One row per directory under results/ that holds `results.json` (a study) or `report.json` (training)."""
    out = []
    for path in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        if (path / "results.json").is_file():
            results = json.loads((path / "results.json").read_text())
            config = results.get("config") or {}
            prov = results.get("provenance") or {}
            n = next((config[k] for k in ("test_limit", "limit", "examples", "n") if config.get(k) is not None), "")
            headline = (results.get("headline") or [""])[0]
        elif (path / "report.json").is_file():
            prov, (n, headline) = {}, _training_row(path)
        else:
            continue
        model = (prov.get("model") or {}).get("shipped_name") or (prov.get("model") or {}).get("spec")
        note = ""
        if not prov:
            model, note = LEGACY_MODELS.get(path.name, ("unknown (no provenance)", ""))
        link = next((f for f in ("report.md", "carry_report.md") if (path / f).is_file()), "")
        out.append({"study": _study(path.name), "directory": path.name, "model": model or "", "n": str(n),
                    "headline": headline, "link": f"[{path.name}/{link}]({path.name}/{link})" if link else path.name,
                    "provenance": "recorded" if prov else f"before provenance; {note}"})
    return out


def render() -> str:
    """The text of `results/index.md`."""
    lines = ["# Committed results", "",
             "Every directory here is the output of a script in `runs/` (the directory's `report.md` names the "
             "configuration). Results written since provenance was recorded carry it in `results.json` "
             "(`provenance`: package version and git commit, library versions, model shipped name and weights "
             "fingerprint, seed, config); older ones name the model as it was called then, and the last column "
             "says which shipped model that was. Regenerate with `python runs/results_index.py`.", "",
             "| study | directory | model (shipped name) | n | headline | report | provenance |",
             "|---|---|---|---|---|---|---|"]
    for r in rows():
        lines.append("| " + " | ".join(_cell(r[k]) for k in ("study", "directory", "model", "n", "headline")) + " | "
                     + r["link"] + " | " + _cell(r["provenance"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or `--check`) `results/index.md`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if results/index.md is out of date")
    args = parser.parse_args(argv)
    text, index = render(), RESULTS / "index.md"
    if args.check:
        if not index.is_file() or index.read_text() != text:
            print("results_index: results/index.md is out of date; run python runs/results_index.py", file=sys.stderr)
            return 1
        return 0
    index.write_text(text)
    print(f"wrote {index} ({text.count(chr(10)) - 6} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
