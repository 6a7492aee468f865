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

from nnsight_codi.cli import one_line_errors
from nnsight_codi.reporting import save_figure  # noqa: E402
from nnsight_codi.stats import bootstrap_ci, paired_bootstrap_diff, significant  # noqa: E402


def _open(path: Path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(path, consolidated=False).load()


def patching_tables(ds: xr.Dataset) -> dict[str, pd.DataFrame]:
    """Per (step, layer): mean Δ log-prob of the clean answer vs the corrupted run, its CI, and the
    recovery rate (the patched corrupted run answers as the clean run) with CI."""
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


def analyze(directory: str | Path, out: str | Path) -> dict[str, Any]:
    directory, out = Path(directory), Path(out)
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
        results["anchors_summary"] = {"n": int(ds.sizes["example"]),
                                      "base_accuracy": float(ds["base_correct"].mean()),
                                      "most_important_latent": int(imp.idxmin()),
                                      "most_attended_latent": int(att.idxmax()),
                                      "spearman_importance_attention": float(
                                          pd.Series(-imp.values).corr(pd.Series(att.values), method="spearman"))}
        results["figures"].append(str(anchors_figure(table, out)))
    return results


@one_line_errors("analyses.patching")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", help="patching study directory (patching.zarr, anchors.zarr)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from nnsight_codi.reporting import write_results

    results = analyze(args.store, args.out)
    write_results(args.out, results)
    summary = {k: v for k, v in results.items() if k.endswith("summary") or k == "figures"}
    print(json.dumps(summary, indent=2, default=str) if args.json else summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
