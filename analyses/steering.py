"""Offline analysis of a steering sweep: accuracy and Δ vs the unsteered baseline with paired
bootstrap CIs, A × B heatmaps per coefficient and mode, the table of significant conditions, the
activation-difference lens grid, and PCA of the latents and of the KV cache by latent index.

Reads only stores (`DIR/sweep.zarr`, `DIR/vectors.zarr`, `DIR/reference.zarr`); no model, no torch. The
report written from the results is `analyses.steering_report`.

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
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from nnsight_codi.errors import one_line_errors
from nnsight_codi.reporting import (
    save_figure,  # noqa: E402
    write_results,
)
from nnsight_codi.stats import bootstrap_ci, holm, mcnemar_exact, paired_bootstrap_diff
from nnsight_codi.store import open_store  # noqa: E402
from nnsight_codi.store.sweep_store import SWEEP_STORE, condition_table, open_sweep  # noqa: E402
from nnsight_codi.store.vector_store import open_vectors  # noqa: E402


def accuracy_table(sweep_dir: str | Path, seed: int = 0) -> pd.DataFrame:
    """One row per condition: accuracy [CI], Δ vs `none` [paired CI], significance."""
    return condition_table(open_sweep(sweep_dir), seed=seed)


def significant_conditions(table: pd.DataFrame) -> pd.DataFrame:
    """Conditions whose paired CI of Δ excludes 0, largest |Δ| first."""
    sig = table[table["significant"]].copy()
    return sig.reindex(sig["delta"].abs().sort_values(ascending=False).index)


def heatmaps(table: pd.DataFrame, out: str | Path) -> list[Path]:
    """One figure per mode: A × B heatmaps of Δ accuracy, one panel per coefficient (* = significant).
    Only for sweeps with one site per mode (the site-by-site figures cover the matched sites).
    """
    paths = []
    for mode in ("hidden", "kv"):
        sub = table[table["mode"] == mode]
        if sub.empty or sub.duplicated(["pair_a", "pair_b", "coef"]).any():
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
        if "site" in sub:
            for (c, site), g in sub.groupby(["coef", "site"], sort=True):
                rows.append({"group": f"{site} {c:+g} (mean of {len(g)})", "accuracy": g["accuracy"].mean(),
                             "low": g["accuracy"].min(), "high": g["accuracy"].max()})
            continue
        for c, g in sub.groupby("coef"):
            rows.append({"group": f"{mode} {c:+g} (mean of {len(g)} pairs)", "accuracy": g["accuracy"].mean(),
                         "low": g["accuracy"].min(), "high": g["accuracy"].max()})
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(df) + 1.2))
    y = np.arange(len(df))
    xerr = np.clip(np.array([df["accuracy"] - df["low"], df["high"] - df["accuracy"]], dtype=float), 0, None)
    ax.errorbar(df["accuracy"], y, xerr=xerr, fmt="o", capsize=3)
    ax.set_yticks(y, df["group"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (bars: bootstrap 95% CI; for steering rows: min–max over pairs and sites)")
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
    latent position; 2-D scatter coloured by latent index and by correctness; explained variance.
    """
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


def add_sites(table: pd.DataFrame, ds) -> pd.DataFrame:
    """Each condition's edit site: `route` (hidden | kv), `latent` (`latent<k>`, or `all` for KV at every
    latent entry), `layer` (hidden), `site` (a label), `extra_step`.
    """
    k = int(ds.attrs.get("num_latents") or 0)
    params = {c["name"]: c for c in ds.attrs.get("conditions", [])}
    route, latent, layer, site, extra = [], [], [], [], []
    for name, mode in zip(table["condition"], table["mode"]):
        p = params.get(name, {})
        extra.append(bool(p.get("extra_latent_step", False)))
        if mode == "hidden":
            at = p.get("at") if p.get("at") is not None else k
            lay = p.get("layer") if p.get("layer") is not None else "L"
            route.append("hidden"), latent.append(f"latent{at}"), layer.append(lay), site.append(f"hidden L{lay}")
        elif mode == "kv":
            pos = p.get("positions", "latents")
            lat = pos if pos.startswith("latent") and pos[6:].isdigit() else ("all" if pos == "latents" else pos)
            route.append("kv"), latent.append(lat), layer.append(None), site.append("KV")
        else:
            route.append(None), latent.append(None), layer.append(None), site.append(None)
    return table.assign(route=pd.Series(route, index=table.index, dtype=object),
                        latent=pd.Series(latent, index=table.index, dtype=object),
                        layer=pd.Series(layer, index=table.index, dtype=object),
                        site=pd.Series(site, index=table.index, dtype=object), extra_step=extra)


def _latent_order(name: str) -> int:
    return int(name[6:]) if name.startswith("latent") and name[6:].isdigit() else 10 ** 6


def _changed(ds, keep: np.ndarray, names: list[str], reference: str = "none") -> np.ndarray:
    """`[condition, example]`: the answer differs from `reference`'s answer on the same problem."""
    pred = ds["answer_pred"].values[:, keep]
    ref = pred[names.index(reference)]
    same = (pred == ref) | (np.isnan(pred) & np.isnan(ref))
    return ~same


def by_site(ds, table: pd.DataFrame, seed: int = 0) -> list[dict[str, Any]]:
    """Per edit site (latent × route × layer): answers changed and Δ accuracy, averaged over the site's
    conditions (pairs × coefficients) per problem, with bootstrap CIs over problems; for hidden sites the
    paired difference hidden − KV twin (same latent) in answers changed.
    """
    correct = ds["correct"].values.astype(np.float64)
    keep = ~np.isnan(correct).any(axis=0)
    correct = correct[:, keep]
    names = [str(c) for c in ds["condition"].values]
    base = correct[names.index("none")]
    changed = _changed(ds, keep, names).astype(np.float64)
    steer = table[table["route"].notna()]
    per_site: dict[tuple, dict[str, Any]] = {}
    layer_key = pd.Series(["None" if l is None or l != l else str(l) for l in steer["layer"]], index=steer.index)
    for (latent, route, layer), g in steer.groupby(["latent", "route", layer_key], sort=False):
        idx = [names.index(n) for n in g["condition"]]
        x = changed[idx].mean(axis=0)
        d = (correct[idx] - base).mean(axis=0)
        ch, de = bootstrap_ci(x, seed=seed), bootstrap_ci(d, seed=seed)
        per_site[(latent, route, layer)] = {
            "latent": latent, "route": route, "layer": None if layer == "None" else (int(layer) if layer.isdigit() else layer), "conditions": len(idx),
            "changed": ch.value, "changed_low": ch.low, "changed_high": ch.high,
            "mean_delta": de.value, "mean_delta_low": de.low, "mean_delta_high": de.high,
            "significant": int(g["significant"].sum()),
            "better": int((g["significant"] & (g["delta"] > 0)).sum()),
            "worse": int((g["significant"] & (g["delta"] < 0)).sum()), "n": ch.n, "_x": x}
    for (latent, route, layer), row in per_site.items():
        twin = per_site.get((latent, "kv", "None"))
        if route == "hidden" and twin is not None:
            diff = paired_bootstrap_diff(row["_x"], twin["_x"], seed=seed)
            row.update(route_diff=diff.value, route_diff_low=diff.low, route_diff_high=diff.high)
    rows = [{k: v for k, v in r.items() if k != "_x"} for r in per_site.values()]
    return sorted(rows, key=lambda r: (_latent_order(r["latent"]), r["route"] != "hidden", str(r["layer"]).zfill(3)))


def seed_design(ds, table: pd.DataFrame, seed: int = 0) -> list[dict[str, Any]]:
    """The seed's own design read out of the sweep: hidden at latents 1–4 at the last layer swept (+ the
    extra step), and KV at every latent entry of the cache eot reads; mean over its conditions.
    """
    correct = ds["correct"].values.astype(np.float64)
    keep = ~np.isnan(correct).any(axis=0)
    correct = correct[:, keep]
    names = [str(c) for c in ds["condition"].values]
    base = correct[names.index("none")]
    changed = _changed(ds, keep, names).astype(np.float64)
    hidden = table[table["route"] == "hidden"]
    top = max((int(l) for l in hidden["layer"] if l is not None and l == l and str(l) != "L"), default=None)
    groups = []
    if top is not None:
        groups.append((f"hidden at latents 1–4, layer {top}, + extra step",
                       hidden[(hidden["layer"] == top) & hidden["latent"].isin([f"latent{k}" for k in range(1, 5)])]))
    groups.append(("KV at every latent entry (the cache eot reads)", table[(table["route"] == "kv") & (table["latent"] == "all")]))
    rows = []
    for what, g in groups:
        if g.empty:
            continue
        idx = [names.index(n) for n in g["condition"]]
        de = bootstrap_ci((correct[idx] - base).mean(axis=0), seed=seed)
        ch = bootstrap_ci(changed[idx].mean(axis=0), seed=seed)
        rows.append({"what": what, "conditions": len(idx), "mean_delta": de.value, "mean_delta_low": de.low,
                     "mean_delta_high": de.high, "changed": ch.value, "changed_low": ch.low, "changed_high": ch.high,
                     "significant": int(g["significant"].sum()), "n": de.n})
    return rows


def site_figure(sites: list[dict[str, Any]], out: str | Path, name: str, title: str) -> Path | None:
    """Answers changed and Δ accuracy per edit site: hidden at each layer vs the KV twin, latent by latent."""
    df = pd.DataFrame(sites)
    if df.empty:
        return None
    df["label"] = [f"hidden L{int(l) if isinstance(l, (int, float)) and l == l else l}" if r == "hidden" else "KV twin"
                   for r, l in zip(df["route"], df["layer"])]
    latents = sorted(df["latent"].unique(), key=_latent_order)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    palette = sns.color_palette("viridis", n_colors=max(1, df[df["route"] == "hidden"]["label"].nunique()))
    colours = {lab: palette[i] for i, lab in enumerate(sorted(df[df["route"] == "hidden"]["label"].unique()))}
    colours["KV twin"] = "tab:red"
    for ax, (col, ylabel) in zip(axes, (("changed", "answers changed vs unsteered"),
                                        ("mean_delta", "Δ accuracy vs unsteered"))):
        for i, (lab, g) in enumerate(df.groupby("label", sort=True)):
            x = np.array([latents.index(l) for l in g["latent"]]) + (i - 1.5) * 0.06
            yerr = np.clip(np.array([g[col] - g[f"{col}_low"], g[f"{col}_high"] - g[col]], dtype=float), 0, None)
            ax.errorbar(x, g[col], yerr=yerr, fmt="o-" if lab != "KV twin"
                        else "s--", capsize=2, ms=4, color=colours[lab], label=lab)
        ax.set_xticks(range(len(latents)), latents, fontsize=8)
        ax.set_xlabel("edit site (latent k; 'all' = KV at every latent entry)")
        ax.set_ylabel(ylabel)
        ax.axhline(0, color="grey", lw=0.8)
    axes[0].legend(fontsize=7, loc="best")
    n = int(df["n"].max())
    fig.suptitle(f"{title} (n={n}; mean over pairs × coefficients; bars: 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, name)


def site_heatmap(table: pd.DataFrame, out: str | Path, name: str = "steering_sites_heatmap") -> Path | None:
    """Δ accuracy per (site row × latent column), one panel per pair × coefficient (* = paired CI excludes 0)."""
    sub = table[table["route"].notna()]
    if sub.empty:
        return None
    combos = sub[["pair_a", "pair_b", "coef"]].drop_duplicates().sort_values(["pair_a", "pair_b", "coef"]).values.tolist()
    site_rows = sorted(sub["site"].unique(), key=lambda s: (s == "KV", s))
    latents = sorted(sub["latent"].unique(), key=_latent_order)
    cols = min(4, len(combos))
    nrows = (len(combos) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(2.9 * cols + 1, 0.5 * len(site_rows) * nrows + 1.3 * nrows),
                             squeeze=False)
    lim = max(0.05, float(sub["delta"].abs().max()))
    for ax, (a, b, c) in zip(axes.ravel(), combos):
        cell = sub[(sub["pair_a"] == a) & (sub["pair_b"] == b) & (sub["coef"] == c)]
        grid = pd.DataFrame(np.nan, index=site_rows, columns=latents)
        marks = pd.DataFrame("", index=site_rows, columns=latents)
        for _, r in cell.iterrows():
            grid.loc[r["site"], r["latent"]] = r["delta"]
            marks.loc[r["site"], r["latent"]] = f"{100 * r['delta']:+.0f}" + ("*" if r["significant"] else "")
        sns.heatmap(grid, ax=ax, cmap="RdBu", vmin=-lim, vmax=lim, annot=marks, fmt="", cbar=False,
                    annot_kws={"fontsize": 6})
        ax.set_title(f"pair {int(a)}−{int(b)}, coef {c:+g}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(combos):]:
        ax.axis("off")
    fig.suptitle(f"Δ accuracy in points by edit site (n={int(sub['n'].max())}; * paired 95% CI excludes 0)", fontsize=10)
    fig.tight_layout()
    _colorbar(fig, axes, "RdBu", -lim, lim, "Δ accuracy vs unsteered")
    return save_figure(fig, out, name)


def _baseline(table: pd.DataFrame, name: str) -> dict[str, Any] | None:
    row = table[table["condition"] == name]
    if row.empty:
        return None
    r = row.iloc[0]
    return {"accuracy": float(r["accuracy"]), "ci_low": float(r["acc_low"]), "ci_high": float(r["acc_high"]),
            "n": int(r["n"]), "delta": float(r["delta"]), "delta_low": float(r["delta_low"]),
            "delta_high": float(r["delta_high"])}


def _analyse_sweep(sweep_dir: Path, out: Path) -> dict[str, Any]:
    """Every table and figure of one sweep directory (`sweep.zarr`, optionally `vectors.zarr`, `reference.zarr`)."""
    ds = open_sweep(sweep_dir)
    table = add_sites(condition_table(ds), ds)
    sig = significant_conditions(table)
    sites = by_site(ds, table)
    figures = heatmaps(table, out) + [summary_figure(table, out)]
    figures += [f for f in (site_figure(sites, out, "steering_sites", "Hidden steering vs its KV twin, site by site"),
                            site_heatmap(table, out)) if f]
    results: dict[str, Any] = {"table": table.to_dict(orient="records"),
                               "significant": sig.to_dict(orient="records"), "by_site": sites,
                               "seed_design": seed_design(ds, table)}
    if (sweep_dir / "vectors.zarr").exists():
        path = lens_grid(open_vectors(sweep_dir / "vectors.zarr"), out)
        figures += [path] if path else []
    if (sweep_dir / "reference.zarr").exists():
        pca, paths = pca_by_latent(sweep_dir / "reference.zarr", out)
        results["pca"] = pca
        figures += paths
    results["figures"] = [str(f) for f in figures]
    base = _baseline(table, "none")
    results["baseline"] = {k: base[k] for k in ("accuracy", "ci_low", "ci_high", "n")}
    extra = _baseline(table, "none+x")
    if extra:
        results["baseline"].update(extra_step_accuracy=extra["accuracy"], extra_step_ci_low=extra["ci_low"],
                                   extra_step_ci_high=extra["ci_high"], extra_step_delta=extra["delta"],
                                   extra_step_delta_low=extra["delta_low"], extra_step_delta_high=extra["delta_high"])
    by_mode = {}
    for mode, g in table.groupby("mode"):
        by_mode[mode] = {"conditions": int(len(g)), "significant": int(g["significant"].sum()),
                         "better": int(((g["delta_low"] > 0) & g["significant"]).sum()),
                         "worse": int(((g["delta_high"] < 0) & g["significant"]).sum()),
                         "mean_delta": float(g["delta"].mean()), "min_delta": float(g["delta"].min()),
                         "max_delta": float(g["delta"].max())}
    results["by_mode"] = by_mode
    return results


def analyse(store_or_dir: str | Path, out: str | Path, sweep: dict[str, Any] | None = None,
            config: dict[str, Any] | None = None, headroom_sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """The steering study's results (no headline) from its directory (`sweep/`, and `headroom/` when
    `config["headroom"]`) or from one sweep directory; `sweep`, `config` and `headroom_sweep` (the run's
    summaries and its configuration) are kept in the results as they were run.
    """
    directory, out = Path(store_or_dir), Path(out)
    study = (directory / "sweep").is_dir() and not (directory / SWEEP_STORE).exists()
    results = _analyse_sweep(directory / "sweep" if study else directory, out)
    if sweep is not None:
        results["sweep"] = sweep
    if config is not None:
        results["config"] = config
    if study and config and config.get("headroom"):
        results["headroom"] = headroom_tests(directory / "headroom", out, what=(
            f"{config['headroom_steps']}-operation problems of the generator, one more than the model was trained on"))
        results["headroom"]["sweep"] = headroom_sweep
        results["figures"] += results["headroom"].pop("figures", [])
    return results


def headroom_tests(sweep_dir: str | Path, out: str | Path, what: str = "") -> dict[str, Any]:
    """Does any steering condition beat the unsteered run? Exact McNemar per condition vs `none`,
    Holm-corrected over all steering conditions (hidden rows also vs `none+x`, Holm over the hidden rows).
    """
    ds = open_sweep(sweep_dir)
    table = add_sites(condition_table(ds), ds)
    correct = ds["correct"].values.astype(np.float64)
    keep = ~np.isnan(correct).any(axis=0)
    correct = correct[:, keep]
    names = [str(c) for c in ds["condition"].values]
    steer = table[table["route"].notna()].copy()
    base = correct[names.index("none")]
    steer["p"] = [mcnemar_exact(correct[names.index(n)], base) for n in steer["condition"]]
    steer["p_holm"] = holm(steer["p"].values) if len(steer) else []
    steer["better"] = (steer["p_holm"] < 0.05) & (steer["delta"] > 0)
    steer["worse"] = (steer["p_holm"] < 0.05) & (steer["delta"] < 0)
    if "none+x" in names:
        extra = correct[names.index("none+x")]
        hid = steer["route"] == "hidden"
        acc_x = extra.mean()
        steer["delta_vs_extra_step"] = steer["accuracy"] - acc_x
        ps = [mcnemar_exact(correct[names.index(n)], extra) for n in steer.loc[hid, "condition"]]
        steer["p_holm_vs_extra_step"] = np.nan
        if ps:
            steer.loc[hid, "p_holm_vs_extra_step"] = holm(ps)
        steer.loc[~hid, "delta_vs_extra_step"] = np.nan
    sites = by_site(ds, table)
    extra_changed = (float(_changed(ds, keep, names)[names.index("none+x")].mean()) if "none+x" in names else None)
    fig = site_figure(sites, out, "headroom_sites", f"Headroom run: {what}" if what else "Headroom run")
    top = steer.sort_values(["p", "delta"], ascending=[True, False]).head(15)
    better = steer[steer["better"]].sort_values("delta", ascending=False)
    return {"problems": what, "baseline": _baseline(table, "none"), "extra_step": _baseline(table, "none+x"),
            "extra_step_changed": extra_changed,
            "tested": int(len(steer)), "correction": "Holm (family-wise, over all steering conditions)",
            "test": "exact McNemar, two-sided", "better_after_holm": better.to_dict(orient="records"),
            "worse_after_holm": int(steer["worse"].sum()),
            "best": steer.sort_values("delta", ascending=False).head(1).to_dict(orient="records"),
            "top": top.to_dict(orient="records"), "by_site": sites, "figures": [str(fig)] if fig else []}


@one_line_errors("analyses.steering")
def main(argv: list[str] | None = None) -> int:
    """Command line: analyse a steering sweep directory, write its results, print the per-mode table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", help="sweep directory (sweep.zarr, vectors.zarr, reference.zarr)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = analyse(args.store, args.out)
    write_results(args.out, results)
    if args.json:
        json.dump({k: results[k] for k in ("baseline", "by_mode", "figures")}, sys.stdout, indent=2, default=str)
        print()
    else:
        print(json.dumps(results["by_mode"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
