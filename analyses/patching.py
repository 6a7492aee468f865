"""Offline analysis of the patching study: activation patching (layer × step) and thought anchors.

Reads `DIR/patching.zarr` and `DIR/anchors.zarr` (written by `runs/patching_study.py`) with xarray;
no model, no torch.

    python -m analyses.patching out/patching_study --out out/patching_analysis [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

from nnsight_codi.errors import one_line_errors
from nnsight_codi.reporting import markdown_table, save_figure, source_row, verdict, write_results  # noqa: E402
from nnsight_codi.stats import bootstrap_ci, paired_bootstrap_diff, significant  # noqa: E402

TITLE = "Patching study: activation patching and thought anchors"


def _open(path: Path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(path, consolidated=False).load()


def patching_tables(ds: xr.Dataset) -> dict[str, pd.DataFrame]:
    """Per (step, layer): mean Δ log-prob of the clean answer vs the corrupted run, its CI, and the
    recovery rate (the patched corrupted run answers as the clean run) with CI.
    """
    rows = []
    base = ds["corrupt_logprob"].values
    for step in ds["step"].values:
        for layer in ds["layer"].values:
            lp = ds["logprob"].sel(step=step, layer=layer).values
            d = paired_bootstrap_diff(lp, base)
            r = bootstrap_ci(ds["recovered"].sel(step=step, layer=layer).values.astype(float))
            rows.append({"step": int(step), "step_name": str(ds["step_name"].sel(step=step).values),
                         "layer": int(layer), "delta_logprob": d.value, "dlp_low": d.low, "dlp_high": d.high,
                         "recovered": r.value, "rec_low": r.low, "rec_high": r.high, "n": r.n})
    return {"cells": pd.DataFrame(rows)}


def anchors_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per latent and ablation: Δ log-prob of the model's answer, Δ accuracy (paired CIs), attention score."""
    rows = []
    base_lp, base_ok = ds["base_logprob"].values, ds["base_correct"].values.astype(float)
    for kind in ds["kind"].values:
        for latent in ds["latent"].values:
            lp = ds["logprob"].sel(kind=kind, latent=latent).values
            ok = ds["correct"].sel(kind=kind, latent=latent).values.astype(float)
            dl, da = paired_bootstrap_diff(lp, base_lp), paired_bootstrap_diff(ok, base_ok)
            att = bootstrap_ci(ds["attention"].sel(latent=latent).values)
            rows.append({"kind": str(kind), "latent": int(latent), "delta_logprob": dl.value, "dlp_low": dl.low,
                         "dlp_high": dl.high, "delta_accuracy": da.value, "dacc_low": da.low, "dacc_high": da.high,
                         "significant": significant(da), "attention": att.value, "att_low": att.low,
                         "att_high": att.high, "n": da.n})
    return pd.DataFrame(rows)


def patching_figure(cells: pd.DataFrame, out: Path, n: int) -> Path:
    """Plot the activation-patching heatmaps (Δ log p and recovered, layer × step); save the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for ax, col, title, cmap in ((axes[0], "delta_logprob", "Δ log p(clean answer) vs corrupted run", "viridis"),
                                 (axes[1], "recovered", "fraction answering as the clean run", "magma")):
        grid = cells.pivot(index="layer", columns="step_name", values=col)
        grid = grid[list(dict.fromkeys(cells.sort_values("step")["step_name"]))].sort_index(ascending=False)
        sns.heatmap(grid, ax=ax, cmap=cmap, annot=True, fmt=".2f", annot_kws={"fontsize": 7},
                    cbar_kws={"label": col.replace("_", " ")})
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step patched (last position)")
        ax.set_ylabel("layer (0 = embeddings)")
    fig.suptitle(f"Activation patching clean → corrupted (first operand changed), n={n} problems", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, "activation_patching")


def anchors_figure(table: pd.DataFrame, out: Path) -> Path:
    """Plot the thought-anchor effects of ablating each latent and its attention score; save the figure."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, col, lo, hi, label in ((axes[0], "delta_accuracy", "dacc_low", "dacc_high", "Δ accuracy"),
                                   (axes[1], "delta_logprob", "dlp_low", "dlp_high", "Δ log p(answer)")):
        for i, (kind, g) in enumerate(table.groupby("kind", sort=False)):
            x = g["latent"].values + (i - 1) * 0.22
            ax.errorbar(x, g[col], yerr=[g[col] - g[lo], g[hi] - g[col]], fmt="o", capsize=3, label=kind)
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set_xlabel("latent ablated")
        ax.set_ylabel(label)
        ax.set_title(f"{label} when one latent is ablated (95% paired CI)", fontsize=9)
        ax.legend(title="ablation", fontsize=8)
    att = table.drop_duplicates("latent")
    axes[2].bar(att["latent"], att["attention"], yerr=[att["attention"] - att["att_low"], att["att_high"] - att["attention"]],
                capsize=3, color="tab:purple")
    axes[2].set_xlabel("latent")
    axes[2].set_ylabel("mean attention from later steps")
    axes[2].set_title("Attention-based score (layers × heads mean)", fontsize=9)
    fig.suptitle(f"Thought anchors: importance of each latent step (n={int(table['n'].max())})", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, "thought_anchors")


def importance_attention_spearman(ds: xr.Dataset, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Spearman correlation across latents between importance (−mean Δ log p over ablation kinds) and
    the attention later steps pay each latent, with a percentile bootstrap CI over problems (each
    resample recomputes both per-latent means, then the rank correlation over the K latents).
    """
    from scipy.stats import spearmanr

    lp = ds["logprob"].transpose("example", "kind", "latent").values - ds["base_logprob"].values[:, None, None]
    att = ds["attention"].transpose("example", "latent").values

    def rho(idx):
        imp = -np.nanmean(lp[idx], axis=(0, 1))
        a = np.nanmean(att[idx], axis=0)
        if np.ptp(imp) == 0 or np.ptp(a) == 0:
            return np.nan
        return float(spearmanr(imp, a).statistic)

    n = lp.shape[0]
    point = rho(np.arange(n))
    rng = np.random.default_rng(seed)
    boot = np.array([rho(rng.integers(0, n, n)) for _ in range(resamples)])
    boot = boot[np.isfinite(boot)]
    low, high = (np.quantile(boot, [0.025, 0.975]) if boot.size else (np.nan, np.nan))
    return {"value": point, "ci_low": float(low), "ci_high": float(high), "n_problems": n}


def compare_with_source(results: dict[str, Any]) -> list[dict[str, str]]:
    """The "Compared with the source" rows of the patching report, from the results alone."""
    rows = []
    a, table = results.get("anchors_summary"), results.get("anchors", [])
    if a and table:
        by = pd.DataFrame(table)
        mean = by[by["kind"] == "mean"] if (by["kind"] == "mean").any() else by[by["kind"] == by["kind"].iloc[0]]
        kind = str(mean["kind"].iloc[0])
        worst = mean.loc[mean["delta_accuracy"].idxmin()]
        cells = "; ".join(f"latent {int(r['latent'])} {100 * r['delta_accuracy']:+.1f} [{100 * r['dacc_low']:+.1f}, "
                          f"{100 * r['dacc_high']:+.1f}]" for _, r in mean.iterrows() if int(r["latent"]) in (3, 5))
        where = {int(worst["latent"])}
        rows.append(source_row(
            "Cywiński et al. post (CODI-Llama-1B, experiment 4)",
            "the intermediate values sit at the 3rd and 5th latents (mean-latent patching there changes the answer)",
            f"{kind} ablation moves accuracy most at latent {int(worst['latent'])}: "
            f"{100 * worst['delta_accuracy']:+.1f} pts [{100 * worst['dacc_low']:+.1f}, {100 * worst['dacc_high']:+.1f}]"
            + (f"; {cells}" if cells else "") + f" (n={int(worst['n'])})",
            f"a random latent: {100 * a['random_latent_delta_accuracy'].get(kind, float('nan')):+.1f} pts "
            f"(mean over latents); base accuracy {100 * a['base_accuracy']:.1f}%",
            ("agree" if where & {3, 5} else "differ") if verdict(worst["dacc_low"], worst["dacc_high"], below=0.0,
                                                                   n=int(worst["n"])) == "agree" else "inconclusive",
            "another model (the tiny CODI), another ablation (mean of all problems, not of same/different values)"
            + ("" if where & {3, 5} else f"; here the anchor is latent {int(worst['latent'])}")))
        lo, hi = a.get("spearman_ci_low"), a.get("spearman_ci_high")
        said = verdict(lo, hi, above=0.0, n=a.get("n"))
        rows.append(source_row(
            "Scratchpad Thinking (Goyal et al., CODI-GPT-2; thought anchors)",
            "the latents later steps attend to most are the ones whose ablation matters (anchors)",
            f"most important latent {a['most_important_latent']}, most attended {a['most_attended_latent']}; "
            f"Spearman importance vs attention {a['spearman_importance_attention']:+.2f} "
            f"[{lo:+.2f}, {hi:+.2f}] over {a['spearman_n_latents']} latents (CI: bootstrap over n={a['n']} problems)",
            f"no association: 0; mean attention per latent {a['attention_mean_over_latents']:.3f}",
            said,
            {"agree": "the CI lies above 0", "differ": "the CI lies at or below 0"}.get(
                said, f"the CI includes 0 or rests on too few problems (only {a['spearman_n_latents']} latents, "
                f"{a['n']} problems): the agreement of the two top latents alone is not evidence")))
        zero = by[by["kind"] == "zero"]
        if len(zero):
            z = zero.loc[zero["delta_accuracy"].idxmin()]
            rows.append(source_row(
                "Scratchpad Thinking (Goyal et al., CODI-GPT-2; thought configurations)",
                "random vectors for the thoughts drop accuracy (41.7% → 15.3%, all six thoughts replaced)",
                f"one latent zeroed at a time: largest drop latent {int(z['latent'])} {100 * z['delta_accuracy']:+.1f} pts "
                f"[{100 * z['dacc_low']:+.1f}, {100 * z['dacc_high']:+.1f}] (n={int(z['n'])})",
                f"a random latent zeroed: {100 * a['random_latent_delta_accuracy'].get('zero', float('nan')):+.1f} pts",
                "not comparable", "they replace every thought with noise; we ablate one latent at a time"))
    p = results.get("patching_summary")
    if p:
        b = p["best_cell"]
        rows.append(source_row(
            "Scratchpad Thinking (Goyal et al., CODI-GPT-2; activation patching)",
            "patching each layer's output at each thought between clean and perturbed questions localises the answer",
            f"best cell {b['step_name']} layer {int(b['layer'])}: Δ log p {b['delta_logprob']:+.2f} "
            f"[{b['dlp_low']:+.2f}, {b['dlp_high']:+.2f}], clean answer recovered {100 * b['recovered']:.0f}% "
            f"(n={p['n']})", f"corrupted run alone gives the clean answer {100 * p['corrupt_recovered']:.0f}%",
            "not comparable", "their notebook's per-cell numbers are not in our reference notes"))
    return rows


def analyse(store_or_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """The patching study's results (no headline) from its directory (`patching.zarr`, `anchors.zarr`)."""
    directory, out = Path(store_or_dir), Path(out)
    if not any((directory / name).exists() for name in ("patching.zarr", "anchors.zarr")):
        raise FileNotFoundError(f"{directory} is not a patching-study directory (no patching.zarr or anchors.zarr)")
    results: dict[str, Any] = {"figures": []}
    if (directory / "patching.zarr").exists():
        ds = _open(directory / "patching.zarr")
        cells = patching_tables(ds)["cells"]
        results["patching"] = cells.to_dict(orient="records")
        results["patching_summary"] = {
            "n": int(ds.sizes["example"]), "clean_logprob": float(ds["clean_logprob"].mean()),
            "corrupt_logprob": float(ds["corrupt_logprob"].mean()),
            "corrupt_recovered": float(ds["corrupt_recovered"].mean()),
            "best_cell": cells.sort_values("delta_logprob").iloc[-1].to_dict()}
        results["figures"].append(str(patching_figure(cells, out, int(ds.sizes["example"]))))
    if (directory / "anchors.zarr").exists():
        ds = _open(directory / "anchors.zarr")
        table = anchors_table(ds)
        results["anchors"] = table.to_dict(orient="records")
        imp = table.groupby("latent")["delta_logprob"].mean()
        att = table.drop_duplicates("latent").set_index("latent")["attention"]
        rho = importance_attention_spearman(ds)
        results["anchors_summary"] = {"n": int(ds.sizes["example"]),
                                      "base_accuracy": float(ds["base_correct"].mean()),
                                      "most_important_latent": int(imp.idxmin()),
                                      "most_attended_latent": int(att.idxmax()),
                                      "spearman_importance_attention": rho["value"],
                                      "spearman_ci_low": rho["ci_low"], "spearman_ci_high": rho["ci_high"],
                                      "spearman_n_latents": int(ds.sizes["latent"]),
                                      "attention_mean_over_latents": float(att.mean()),
                                      "random_latent_delta_accuracy": {
                                          str(k): float(g["delta_accuracy"].mean()) for k, g in table.groupby("kind")}}
        results["figures"].append(str(anchors_figure(table, out)))
    return results


def headline(results: dict[str, Any]) -> list[str]:
    """At most five summary lines of the thought-anchor and activation-patching results."""
    lines = []
    a = results.get("anchors_summary")
    if a:
        table = results["anchors"]
        worst = min(table, key=lambda r: r["delta_accuracy"])
        lines.append(f"Thought anchors (n={a['n']}, accuracy {100 * a['base_accuracy']:.1f}%): ablating latent "
                     f"{worst['latent']} ({worst['kind']}) changes accuracy by {100 * worst['delta_accuracy']:+.1f} pts "
                     f"[{100 * worst['dacc_low']:+.1f}, {100 * worst['dacc_high']:+.1f}].")
        lines.append(f"Most important latent by Δ log-prob: {a['most_important_latent']}; most attended: "
                     f"{a['most_attended_latent']} (Spearman importance vs attention across {a['spearman_n_latents']} "
                     f"latents {a['spearman_importance_attention']:+.2f} [{a['spearman_ci_low']:+.2f}, "
                     f"{a['spearman_ci_high']:+.2f}], bootstrap over n={a['n']} problems).")
        later = [r for r in table if r["latent"] >= 2]
        if later:
            lines.append("Ablating one of latents 2..K moves accuracy by at most " + ", ".join(
                f"{100 * max(abs(r['delta_accuracy']) for r in later if r['kind'] == kind):.1f} pts ({kind})"
                for kind in dict.fromkeys(r["kind"] for r in later)) + ".")
    p = results.get("patching_summary")
    if p:
        b = p["best_cell"]
        lines.append(f"Activation patching (n={p['n']}): corrupted runs give the clean answer {100 * p['corrupt_recovered']:.0f}% "
                     f"of the time; the best single (step, layer) patch is {b['step_name']} layer {int(b['layer'])}: "
                     f"Δ log p {b['delta_logprob']:+.2f} [{b['dlp_low']:+.2f}, {b['dlp_high']:+.2f}], recovered "
                     f"{100 * b['recovered']:.0f}%.")
    return lines[:5]


def report_sections(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's sections (before the figures and the comparison with the source), from the results."""
    cols = ["kind", "latent", "delta_accuracy", "dacc_low", "dacc_high", "delta_logprob", "dlp_low", "dlp_high",
            "attention", "n"]
    return [
        ("Headline", "\n".join(f"- {h}" for h in results["headline"])),
        ("Thought anchors", markdown_table([{c: r[c] for c in cols} for r in results.get("anchors", [])])),
        ("Activation patching", "Patch = the residual stream at the step's last position (bot at step 0), "
                                "clean → corrupted. Δ log p = log p(clean answer | patched corrupted) − log p(clean "
                                "answer | corrupted), paired bootstrap CI over problems.\n\n" + markdown_table(
                                    sorted(results.get("patching", []), key=lambda r: -r["delta_logprob"])[:12])),
    ]


@one_line_errors("analyses.patching")
def main(argv: list[str] | None = None) -> int:
    """Command line: analyse a patching study directory, write its results, print the summaries."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", help="patching study directory (patching.zarr, anchors.zarr)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = analyse(args.store, args.out)
    write_results(args.out, results)
    summary = {k: v for k, v in results.items() if k.endswith("summary") or k == "figures"}
    print(json.dumps(summary, indent=2, default=str) if args.json else summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
