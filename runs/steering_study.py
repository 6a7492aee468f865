"""The seed's study end to end ("Latent Reasoning Sprint #3: Activation Difference Steering and Logit
Lens", on CODI): vectors → hidden and KV sweeps → random/mean/zero baselines → figures → report.

1. Capture a reference set of held-out problems (`reference_seed`): hidden states, latent inputs, KV cache.
2. Vectors: mean(latent A) − mean(latent B) for every ordered pair, on the residual stream and the KV cache
   (`sweep/vectors.zarr`, with the activation-difference logit lens).
3. Sweep (`sweep/sweep.zarr`, resumable): hidden-state steering of the last latent's last-layer state with an
   extra latent step (as the seed did), KV-cache steering after the last latent (coef_k = coef_v), for each
   coefficient; latent patching baselines (random with matched statistics, mean, zero) at the last latent.
4. Analysis (`analyses.steering`): accuracy and Δ vs the unsteered run with paired bootstrap CIs, heatmaps,
   significant conditions, difference lens, PCA.

    python runs/steering_study.py --out out/steering_study [--limit 1000 --coefs -2,-1,-0.5,0.5,1,2]
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Config:
    """The steering study (defaults: the tiny CODI, about a minute on a laptop CPU)."""

    model: str = "tiny"
    dataset: str = "synthetic"
    limit: int = 50
    seed: int = 1
    reference_limit: int = 100
    reference_seed: int = 2
    coefs: tuple[float, ...] = (-1.0, 1.0)
    pairs: str = field(default="all", metadata={"help": "'all' ordered latent pairs, or 'A-B,C-D' (indices or names: latent1-latent3)"})
    modes: tuple[str, ...] = ("hidden", "kv")
    baselines: tuple[str, ...] = ("random", "mean", "zero")
    extra_latent_step: bool = True
    positions: str = "latents"
    max_new_tokens: int = 16
    batch_size: int = 100
    device: str = "cpu"
    analyze_only: bool = field(default=False, metadata={
        "help": "analyse the sweep as far as it has run (every condition shares its finished examples) without resuming it"})

    def sweep_config(self):
        from nnsight_codi.interventions.sweep import SweepConfig
        from nnsight_codi.steps import parse_step

        pairs: Any = "all" if self.pairs == "all" else [[parse_step(x) for x in p.split("-")] for p in self.pairs.split(",")]
        return SweepConfig(model=self.model, dataset=self.dataset, limit=self.limit, seed=self.seed,
                           max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, device=self.device,
                           reference_limit=self.reference_limit, reference_seed=self.reference_seed,
                           modes=list(self.modes), pairs=pairs, coefs=[float(c) for c in self.coefs],
                           extra_latent_step=self.extra_latent_step, positions=self.positions,
                           baselines=list(self.baselines))


def demo_config() -> Config:
    """A small sweep: four pairs, ±2, 30 problems (well under a minute)."""
    return Config(limit=30, reference_limit=40, coefs=(-2.0, 2.0), pairs="1-6,6-1,2-4,4-2")


def _ensure_lens(sweep_dir: Path, model: str, device: str) -> None:
    """Add the activation-difference lens to a vector store written without it."""
    from nnsight_codi.interventions.vectors import difference_lens, open_vectors, save_vectors

    path = sweep_dir / "vectors.zarr"
    if not path.exists():
        return
    vectors = open_vectors(path)
    if "lens_top_tokens" not in vectors:
        from nnsight_codi.commands.common import load_codi_model

        save_vectors(difference_lens(load_codi_model(model, device), vectors), path)


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def headline(results: dict[str, Any]) -> list[str]:
    base, modes = results["baseline"], results["by_mode"]
    table = results["table"]
    lines = [f"Unsteered accuracy {100 * base['accuracy']:.1f}% [{100 * base['ci_low']:.1f}, "
             f"{100 * base['ci_high']:.1f}] on n={base['n']} held-out problems."]
    for mode, label in (("hidden", "Hidden-state steering (+extra latent step)"), ("kv", "KV-cache steering")):
        if mode in modes:
            m = modes[mode]
            rows = [r for r in table if r["mode"] == mode]
            worst = min(rows, key=lambda r: r["delta"])
            lines.append(f"{label}: {m['significant']}/{m['conditions']} conditions differ significantly from "
                         f"unsteered ({m['better']} better, {m['worse']} worse); mean Δ {_pct(m['mean_delta'])} pts, "
                         f"largest drop {worst['condition']} {_pct(worst['delta'])} "
                         f"[{_pct(worst['delta_low'])}, {_pct(worst['delta_high'])}].")
    patches = [r for r in table if r["mode"] == "patch"]
    if patches:
        lines.append("Latent patching at the last latent: " + "; ".join(
            f"{r['patch']} Δ {_pct(r['delta'])} [{_pct(r['delta_low'])}, {_pct(r['delta_high'])}]" for r in patches) + ".")
    return lines[:5]


def run(config: Config, out, progress: bool = True) -> dict[str, Any]:
    from analyses.steering import analyze, significant_conditions
    from nnsight_codi.interventions.sweep import run_sweep
    from nnsight_codi.reporting import markdown_table, write_report, write_results

    import pandas as pd

    out = Path(out)
    sweep_dir = out / "sweep"
    if config.analyze_only:
        from nnsight_codi.interventions.sweep import open_sweep

        ds = open_sweep(sweep_dir)
        done = ds["complete"].values.all(axis=0)
        summary = {"path": str(sweep_dir / "sweep.zarr"), "conditions": int(ds.sizes["condition"]),
                   "examples": int(done.sum()), "runs": int(ds["complete"].values.sum()), "planned_examples": int(done.size)}
    else:
        summary = run_sweep(config.sweep_config(), sweep_dir, progress=progress)
    _ensure_lens(sweep_dir, config.model, config.device)
    results = analyze(sweep_dir, out)
    results["sweep"] = summary
    results["config"] = asdict(config)
    results["headline"] = headline(results)
    write_results(out, results)
    table = pd.DataFrame(results["table"])
    sig = significant_conditions(table)
    cols = ["condition", "accuracy", "acc_low", "acc_high", "delta", "delta_low", "delta_high", "n"]
    write_report(out, "Steering study: activation-difference steering of the latent loop", [
        ("Headline", "\n".join(f"- {h}" for h in results["headline"])),
        ("What was run", f"{summary['conditions']} conditions × {summary['examples']} problems "
                         f"({summary['runs']} runs; the analysis uses the problems every condition finished). Vectors: mean(latent A) − mean(latent B) over "
                         f"{config.reference_limit} held-out reference problems (seed {config.reference_seed}). "
                         "Hidden: added to the last latent's last-layer state, then one extra latent step; KV: added "
                         "to the cache at the latent positions after the last latent (before eot). Δ = accuracy − "
                         "unsteered accuracy on the same problems, 95% paired bootstrap CI. Note that (A, B, +c) and "
                         "(B, A, −c) are the same edit, and that hidden conditions also run one more latent than the "
                         "unsteered baseline (the extra step alone moves accuracy by the hidden rows' common offset)."),
        ("Baselines and summary by mode", markdown_table(table[table["mode"].isin(["none", "patch"])][cols].to_dict(
            "records")) + "\n\n" + markdown_table([{"mode": k, **v} for k, v in results["by_mode"].items()])),
        ("Conditions that differ significantly from the unsteered run (largest |Δ| first, top 30)",
         markdown_table(sig[cols].head(30).to_dict("records"))),
    ], figures=results["figures"], config=asdict(config))
    return results


if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "out/steering_study", __doc__))
