"""Offline analysis of a steering sweep: accuracy and Δ vs the unsteered baseline with paired
bootstrap CIs, A × B heatmaps per coefficient and mode, the table of significant conditions, the
activation-difference lens grid, and PCA of the latents and of the KV cache by latent index.

Reads only stores (`DIR/sweep.zarr`, `DIR/vectors.zarr`, `DIR/reference.zarr`); no model, no torch.

    python -m analyses.steering out/steering_study/sweep --out out/steering_analysis [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from nnsight_codi.cli import one_line_errors
from nnsight_codi.interventions.sweep import condition_table, open_sweep  # noqa: E402
from nnsight_codi.interventions.vectors import open_vectors  # noqa: E402
from nnsight_codi.reporting import save_figure  # noqa: E402
from nnsight_codi.store import open_store  # noqa: E402


def accuracy_table(sweep_dir: str | Path, seed: int = 0) -> pd.DataFrame:
    """One row per condition: accuracy [CI], Δ vs `none` [paired CI], significance."""
    return condition_table(open_sweep(sweep_dir), seed=seed)


def significant_conditions(table: pd.DataFrame) -> pd.DataFrame:
    """Conditions whose paired CI of Δ excludes 0, largest |Δ| first."""
    sig = table[table["significant"]].copy()
    return sig.reindex(sig["delta"].abs().sort_values(ascending=False).index)


def heatmaps(table: pd.DataFrame, out: str | Path) -> list[Path]:
    """One figure per mode: A × B heatmaps of Δ accuracy, one panel per coefficient (* = significant)."""
    paths = []
    for mode in ("hidden", "kv"):
        sub = table[table["mode"] == mode]
        if sub.empty:
            continue
        coefs = sorted(sub["coef"].dropna().unique())
        fig, axes = plt.subplots(1, len(coefs), figsize=(3.2 * len(coefs) + 1, 3.4), squeeze=False)
        lim = max(0.05, float(sub["delta"].abs().max()))
        latents = sorted(set(sub["pair_a"].dropna().astype(int)) | set(sub["pair_b"].dropna().astype(int)))
        for ax, c in zip(axes[0], coefs):
            cell = sub[sub["coef"] == c]
            grid = pd.DataFrame(np.nan, index=latents, columns=latents)
            marks = pd.DataFrame("", index=latents, columns=latents)
            for _, r in cell.iterrows():
                a, b = int(r["pair_a"]), int(r["pair_b"])
                grid.loc[a, b] = r["delta"]
                marks.loc[a, b] = f"{100 * r['delta']:+.0f}" + ("*" if r["significant"] else "")
            sns.heatmap(grid, ax=ax, cmap="RdBu", vmin=-lim, vmax=lim, annot=marks, fmt="", cbar=False,
                        annot_kws={"fontsize": 7}, square=True)
            ax.set_title(f"coef {c:+g}" if mode == "hidden" else f"coef_k = coef_v {c:+g}", fontsize=9)
            ax.set_xlabel("latent B")
            ax.set_ylabel("latent A" if ax is axes[0][0] else "")
        n = int(sub["n"].max())
        what = "hidden-state steering (+ extra latent step)" if mode == "hidden" else "KV-cache steering"
        fig.suptitle(f"{what} with mean(latent A) − mean(latent B): Δ accuracy in points (n={n}; * paired 95% CI excludes 0)",
                     fontsize=10)
        fig.tight_layout()
        _colorbar(fig, axes, "RdBu", -lim, lim, "Δ accuracy vs unsteered")
        paths.append(save_figure(fig, out, f"steering_heatmap_{mode}"))
    return paths


def _colorbar(fig, axes, cmap: str, vmin: float, vmax: float, label: str) -> None:
    """One colorbar for a row of equally sized heatmaps."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=list(axes.ravel()), label=label, shrink=0.8,
                 pad=0.02)


def summary_figure(table: pd.DataFrame, out: str | Path) -> Path:
    """Accuracy with CIs: the baseline, the patch baselines, and each mode × coefficient (mean over pairs)."""
    rows = []
    for _, r in table.iterrows():
        if r["mode"] in ("none", "patch"):
            rows.append({"group": r["condition"], "accuracy": r["accuracy"], "low": r["acc_low"], "high": r["acc_high"]})
    for mode in ("hidden", "kv"):
        sub = table[table["mode"] == mode]
        for c, g in sub.groupby("coef"):
            rows.append({"group": f"{mode} {c:+g} (mean of {len(g)} pairs)", "accuracy": g["accuracy"].mean(),
                         "low": g["accuracy"].min(), "high": g["accuracy"].max()})
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(df) + 1.2))
    y = np.arange(len(df))
    ax.errorbar(df["accuracy"], y, xerr=[df["accuracy"] - df["low"], df["high"] - df["accuracy"]], fmt="o", capsize=3)
    ax.set_yticks(y, df["group"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (bars: bootstrap 95% CI; for steering rows: min–max over pairs)")
    ax.set_title(f"Accuracy under steering and patch baselines (n={int(table['n'].max())})", fontsize=10)
    ax.axvline(float(table.loc[table["condition"] == "none", "accuracy"].iloc[0]), color="grey", ls="--", lw=1)
    fig.tight_layout()
    return save_figure(fig, out, "steering_accuracy")


def lens_grid(vectors, out: str | Path) -> Path | None:
    """Activation-difference lens: top-1 token of logit-lens(mean(A) − mean(B)) per layer, A × B grids."""
    if "lens_top_tokens" not in vectors:
        return None
    layers = [int(l) for l in vectors["layer"].values]
    lat = [int(a) for a in vectors["pair_a"].values]
    fig, axes = plt.subplots(1, len(layers), figsize=(3.0 * len(layers) + 1, 3.4), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        probs = vectors["lens_top_probs"].sel(layer=layer, k=0).values if "k" not in vectors.coords else \
            vectors["lens_top_probs"].sel(layer=layer).isel(k=0).values
        toks = vectors["lens_top_tokens"].sel(layer=layer).isel(k=0).values
        sns.heatmap(pd.DataFrame(probs, index=lat, columns=lat), ax=ax, annot=toks, fmt="", cmap="viridis", vmin=0,
                    vmax=1, cbar=False, annot_kws={"fontsize": 6}, square=True)
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel("latent B")
        ax.set_ylabel("latent A" if ax is axes[0][0] else "")
    fig.suptitle("Activation-difference lens: logit lens of mean(latent A) − mean(latent B), top-1 token", fontsize=10)
    fig.tight_layout()
    _colorbar(fig, axes, "viridis", 0, 1, "top-1 probability")
    return save_figure(fig, out, "difference_lens")


def pca_by_latent(reference: str | Path, out: str | Path) -> tuple[dict[str, Any], list[Path]]:
    """PCA of the latent vectors (last-layer hidden state at each latent) and of the KV cache at each
    latent position; 2-D scatter coloured by latent index and by correctness; explained variance."""
    from sklearn.decomposition import PCA

    ds = open_store(reference)
    steps = [i for i, n in enumerate(ds["step_name"].values) if str(n).startswith("latent")]
    correct = ds["correct"].values if "correct" in ds else np.zeros(ds.sizes["example"], bool)
    results: dict[str, Any] = {}
    paths = []
    feats = {}
    top = int(ds["layer"].values.max())
    h = ds["hidden"].sel(layer=top).values[:, steps]                          # example, latent, dim
    feats["latent vectors (last layer)"] = h
    if "kv" in ds:
        kv = ds["kv"].sel(layer=[l for l in ds["layer"].values if l >= 1]).values  # ex, layer, part, head, pos, hd
        plen = ds["prompt_length"].values.astype(int)
        rows = np.arange(kv.shape[0])
        feats["KV cache at the latent position (all blocks)"] = np.stack(
            [kv[rows, :, :, :, plen + k - 1, :].reshape(kv.shape[0], -1) for k in range(1, len(steps) + 1)], axis=1)
    fig, axes = plt.subplots(len(feats), 2, figsize=(10, 4.2 * len(feats)), squeeze=False)
    for row, (name, x) in enumerate(feats.items()):
        n_ex, n_lat = x.shape[:2]
        flat = x.reshape(n_ex * n_lat, -1).astype(np.float64)
        pca = PCA(n_components=min(10, flat.shape[1], flat.shape[0])).fit(flat)
        z = pca.transform(flat)[:, :2]
        latent = np.repeat(np.arange(1, n_lat + 1)[None], n_ex, 0).ravel()
        ok = np.repeat(correct[:, None], n_lat, 1).ravel()
        results[name] = {"explained_variance_ratio": pca.explained_variance_ratio_.round(4).tolist()}
        sns.scatterplot(x=z[:, 0], y=z[:, 1], hue=latent, palette="viridis", s=10, ax=axes[row][0], legend="full")
        axes[row][0].legend(title="latent", fontsize=7, title_fontsize=8, loc="best", markerscale=1.5)
        sns.scatterplot(x=z[:, 0], y=z[:, 1], hue=np.where(ok, "correct", "wrong"), palette={"correct": "tab:green",
                        "wrong": "tab:red"}, s=10, ax=axes[row][1])
        ev = pca.explained_variance_ratio_
        for ax in axes[row]:
            ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% var.)")
            ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}% var.)")
            ax.set_title(f"{name}: coloured by {'latent index' if ax is axes[row][0] else 'answer correctness'}",
                         fontsize=9)
    fig.suptitle(f"PCA of the reference set's latents (n={ds.sizes['example']} problems)", fontsize=10)
    fig.tight_layout()
    paths.append(save_figure(fig, out, "pca_latents"))
    return results, paths


def analyze(sweep_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Every table and figure of the steering study; returns the results dict (no headline)."""
    sweep_dir, out = Path(sweep_dir), Path(out)
    table = accuracy_table(sweep_dir)
    sig = significant_conditions(table)
    figures = heatmaps(table, out) + [summary_figure(table, out)]
    results: dict[str, Any] = {"table": table.to_dict(orient="records"),
                               "significant": sig.to_dict(orient="records")}
    if (sweep_dir / "vectors.zarr").exists():
        path = lens_grid(open_vectors(sweep_dir / "vectors.zarr"), out)
        figures += [path] if path else []
    if (sweep_dir / "reference.zarr").exists():
        pca, paths = pca_by_latent(sweep_dir / "reference.zarr", out)
        results["pca"] = pca
        figures += paths
    results["figures"] = [str(f) for f in figures]
    base = table[table["condition"] == "none"].iloc[0]
    results["baseline"] = {"accuracy": base["accuracy"], "ci_low": base["acc_low"], "ci_high": base["acc_high"],
                           "n": int(base["n"])}
    by_mode = {}
    for mode, g in table.groupby("mode"):
        by_mode[mode] = {"conditions": int(len(g)), "significant": int(g["significant"].sum()),
                         "better": int(((g["delta_low"] > 0) & g["significant"]).sum()),
                         "worse": int(((g["delta_high"] < 0) & g["significant"]).sum()),
                         "mean_delta": float(g["delta"].mean()), "min_delta": float(g["delta"].min()),
                         "max_delta": float(g["delta"].max())}
    results["by_mode"] = by_mode
    return results


@one_line_errors("analyses.steering")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", help="sweep directory (sweep.zarr, vectors.zarr, reference.zarr)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = analyze(args.store, args.out)
    from nnsight_codi.reporting import write_results

    write_results(args.out, results)
    if args.json:
        json.dump({k: results[k] for k in ("baseline", "by_mode", "figures")}, sys.stdout, indent=2, default=str)
        print()
    else:
        print(json.dumps(results["by_mode"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
