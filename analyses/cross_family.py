"""The cross-family report: accuracy by K with and without feedback, the lens by step, ablation, steering
(torch-free).

    python -m analyses.cross_family results/cross_family/results.json   # rewrites report.md beside it

Example:
    >>> r = {"models": [{"model": "m", "latent_family": "codi", "num_latents": 1, "n": 2,
    ...      "accuracy_by_k": {"latent": {"0": 0.5, "1": 1.0}, "pause": {"0": 0.5, "1": 0.5}},
    ...      "lens": {}, "ablation": {"latent1": 0.5}}]}
    >>> headline(r)
    ['m (codi): 100% with 1 latents, 50% with 0, 50% under pause']
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nnsight_codi.errors import one_line_errors

SOURCES = [
    ("Coconut, GPT-2 on GSM8k (Hao et al. 2024, Table 1)", "Coconut 34.1% vs no-CoT 16.5% and CoT 42.9%; "
     "'pause as thought' (the same curriculum with pause tokens in place of continuous thoughts) 24.1%",
     "https://arxiv.org/abs/2412.06769"),
    ("SIM-CoT (Wei et al. 2025, ICLR 2026; its README)", "on GPT-2, step-level supervision of each latent beats "
     "Coconut by +8.2 points, CODI by +4.3 and supervised CoT by +2.1; +1.5 to +9.0 on LLaMA 1B/3B/8B; latents of "
     "unsupervised implicit CoT become homogeneous as K grows", "https://github.com/InternLM/SIM-CoT"),
]


def observed(results: dict[str, Any]) -> list[str]:
    """What this study saw, one line per source row of `SOURCES` (same order)."""
    coconut = [m for m in results["models"] if m["latent_family"] == "coconut"]
    first = ("; ".join(f"{m['model']}: {_acc(m, 'latent', int(m['num_latents'])):.0%} with its thoughts, "
                       f"{_acc(m, 'latent', 0):.0%} with none, {_acc(m, 'pause', int(m['num_latents'])):.0%} under pause "
                       "(at inference only: not trained with pause tokens)"
                       for m in coconut) or "no Coconut model in this run")
    drift = []
    for m in results["models"]:
        norms = {}
        for row in m.get("steering", {}).get("conditions", []):
            norms.setdefault(row["pair"], row["vector_norm"])
        if norms:
            pairs = list(norms)
            drift.append(f"{m['model']}: ‖mean(latent k) - mean(latent k+1)‖ {norms[pairs[0]]:.2f} ({pairs[0]}) → "
                         f"{norms[pairs[-1]]:.2f} ({pairs[-1]})")
    second = "; ".join(drift) or "no steering vectors in this run"
    return [first, second]


def steering_table(model: dict[str, Any]) -> list[str]:
    """Markdown rows: accuracy and answers changed, mean-difference vs random vector, by latent pair and coef."""
    rows = model.get("steering", {}).get("conditions", [])
    if not rows:
        return []
    cells: dict[tuple[str, float], dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["pair"], float(r["coef"])), {})[r["vector"]] = r
    out = [f"Steering at layer {model['steering']['layer']}: latent k+1 plus coef x (mean(latent k) - mean(latent k+1)), "
           "against a random vector of the same norm (accuracy / answers changed):", "",
           "| pair | coef | ‖v‖ | mean difference | random |", "|---|---|---|---|---|"]
    for (pair, coef), by in cells.items():
        md, rnd = by.get("mean_difference"), by.get("random")
        norm = (md or rnd or {}).get("vector_norm", float("nan"))
        out.append(f"| {pair} | {coef:g} | {norm:.2f} | "
                   + " | ".join(f"{c['accuracy']:.0%} / {c['changed']:.0%}" if c else "-" for c in (md, rnd)) + " |")
    return [*out, ""]


def _acc(model: dict, kind: str, k: int) -> float:
    table = model["accuracy_by_k"][kind]
    return float(table.get(str(k), table.get(k, float("nan"))))  # type: ignore[arg-type]


def headline(results: dict[str, Any]) -> list[str]:
    """One line per model: accuracy with its K, with 0 latents, and under pause."""
    lines = []
    for m in results["models"]:
        k = int(m["num_latents"])
        lines.append(f"{m['model']} ({m['latent_family']}): {_acc(m, 'latent', k):.0%} with {k} latents, "
                     f"{_acc(m, 'latent', 0):.0%} with 0, {_acc(m, 'pause', k):.0%} under pause")
    return lines


def report(results: dict[str, Any]) -> str:
    """The markdown report."""
    out = ["# Cross-family study: CODI, Coconut and the pause control on the same problems", ""]
    out += [f"- {line}" for line in headline(results)] + [""]
    for m in results["models"]:
        k = int(m["num_latents"])
        out += [f"## {m['model']} ({m['latent_family']}, K = {k}, {m['n']} problems)", "",
                "| K | " + " | ".join(str(i) for i in range(k + 1)) + " |",
                "|---|" + "---|" * (k + 1)]
        for kind in ("latent", "pause"):
            out.append(f"| {kind} | " + " | ".join(f"{_acc(m, kind, i):.0%}" for i in range(k + 1)) + " |")
        out += ["", "Logit lens of each step's final-normed last hidden state (share of problems whose top-1 token is):",
                "", "| step | an intermediate result | the first result | the final answer | any number |",
                "|---|---|---|---|---|"]
        for step, row in m["lens"].items():
            out.append(f"| {step} | {row['intermediate']:.0%} | {row['first_result']:.0%} | {row['final']:.0%} | "
                       f"{row['number']:.0%} |")
        out += ["", "Ablation: latent k alone replaced by the pause input (accuracy; unablated "
                f"{_acc(m, 'latent', k):.0%}):", "",
                "| " + " | ".join(m["ablation"]) + " |", "|" + "---|" * len(m["ablation"]),
                "| " + " | ".join(f"{v:.0%}" for v in m["ablation"].values()) + " |", ""]
        out += steering_table(m)
    out += ["## Compared with the source", "", "| source | published claim | here (tiny models, synthetic arithmetic) | link |",
            "|---|---|---|---|"]
    out += [f"| {name} | {claim} | {seen} | {link} |" for (name, claim, link), seen in zip(SOURCES, observed(results))]
    return "\n".join(out) + "\n"


@one_line_errors("analyses.cross_family")
def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite report.md from a cross-family study's results.json (or its directory)."""
    p = argparse.ArgumentParser(prog="python -m analyses.cross_family", description=__doc__.splitlines()[0])
    p.add_argument("results", help="the study's results.json, or the directory that holds it")
    p.add_argument("--out", default=None, help="directory for report.md (default: beside results.json)")
    args = p.parse_args(argv)
    path = Path(args.results)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no cross-family results at {args.results} (want results.json or its directory)")
    results = json.loads(path.read_text())
    out = Path(args.out) if args.out else path.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
