"""Lens study read-outs, offline from stores: which latent, at which layer, shows which number.

    python -m analyses.lens_study out/lens_study --out out/lens_study/analysis [--json]
    python -m analyses.lens_study some_capture.zarr --out DIR      # one store with lens read-outs

Input: a study directory (what `runs/lens_study.py` writes: `lens.zarr` with `hidden`, logit-lens
read-outs and the vocabulary; `tuned-<name>.zarr` with tuned-lens read-outs; `acc-k<k>.zarr` with
the answers at each number of latents; `truth.jsonl` with each problem's values) or a single
store (its `<store>.truth.jsonl` beside it if present, else the answer and the question's numbers
only). Reads stores with `open_store` only: no model, no torch.

Tables (`analyse` returns them as lists of rows; `results.json` holds them):
- `detection`: per lens × step × layer × k × target (intermediate / answer / near_miss / operand),
  the rate at which the top-k read-out holds a target value, its bootstrap CI, and the chance
  rate (the same read-outs scored against another problem's values). A token holds a value when
  it spells it whole or is its first token as the model's tokenizer writes it
  (`nnsight_codi.lens.numbers`: multi-token values under BPE); the tokenizer is the one the store
  carries (`tokenizer_json`) or `--tokenizer`, else whole spellings only (`number_rule`);
- `odd_even`: per latent, detection of any chain value (intermediate or answer) and entropy, with
  CIs; `parity`: odd − even latents per example (paired CI); `token_frequency`: the top-1 tokens
  chosen at each latent (last layer);
- `settling`: the step after which the top-1 read-out stops changing, and whether the settled
  number is the answer or one operation (with a question number) away from it;
- `accuracy_vs_latents` (K = 0..K+4) and `early_answer` (stopping after latent k = running with
  k latents: the same computation, read from the same stores);
- `probes`: cross-validated linear-probe accuracy per step × layer vs the majority baseline;
- `answer_histogram`: frequency of each gold answer.

The report written from these tables is `analyses.lens_report`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnsight_codi.errors import one_line_errors
from nnsight_codi.lens.numbers import NumberTokens, hits_ids, one_op_candidates, store_tokenizer, tokenizer_encoder
from nnsight_codi.lens.values import (
    TARGETS,
    one_op_away,
    other_problem,
    problem_truth,
    settle_step,
    target_sets,
    token_values,
)
from nnsight_codi.probes import probe_grid
from nnsight_codi.reporting import _clean, save_figure, write_results
from nnsight_codi.stats import bootstrap_ci, paired_bootstrap_diff
from nnsight_codi.store import open_store

PREFIXES = {"logit": "lens"}


# --------------------------------------------------------------------------- inputs
def load_truth(path: str | Path | None, ds) -> list[dict[str, Any]]:
    """Ground truth rows aligned with the store's examples (from `truth.jsonl`, else the store)."""
    ids = [str(x) for x in ds["example"].values]
    if path is not None and Path(path).is_file():
        rows = {r["id"]: r for r in (json.loads(line) for line in Path(path).read_text().splitlines() if line.strip())}
        missing = [i for i in ids if i not in rows]
        if missing:
            raise ValueError(f"{path}: no ground truth for {len(missing)} examples (e.g. {missing[0]})")
        return [rows[i] for i in ids]
    if "answer_gold" not in ds:
        raise ValueError("no ground truth: give a truth.jsonl or a store with answer_gold")
    gold = ds["answer_gold"].values
    return [{"id": i, **problem_truth(str(q), f"#### {g:g}", [])} for i, q, g in
            zip(ids, ds["question"].values, gold)]


def lens_readouts(stores: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, Any]]:
    """`{lens name: (top_ids, top_probs, entropy, ds)}` from the stores (logit from `lens_*`,
    tuned from `tuned_lens_*`).
    """
    out = {}
    for name, ds in stores.items():
        tuned_label = "tuned" if name == "logit" else (name if name.startswith("tuned") else f"tuned-{name}")
        for prefix, label in (("lens", "logit"), ("tuned_lens", tuned_label)):
            if f"{prefix}_top_ids" in ds and (prefix == "tuned_lens" or name == "logit"):
                out[label] = (ds[f"{prefix}_top_ids"].values, ds[f"{prefix}_top_probs"].values.astype(np.float64),
                              ds[f"{prefix}_entropy"].values.astype(np.float64) if f"{prefix}_entropy" in ds else None, ds)
    return out


def number_reader(ds, tokenizer: Any = None) -> NumberTokens:
    """Which token ids show which value, for a store's vocabulary: under `tokenizer` (a path, a
    tokenizer, a tokenizer.json text), else the store's own `tokenizer_json`, else whole spellings.
    """
    return NumberTokens(vocabulary(ds), tokenizer_encoder(tokenizer if tokenizer is not None else store_tokenizer(ds)))


def target_id_sets(reader: NumberTokens, truth: Sequence[Mapping[str, Any]]) -> dict[str, list[set[int]]]:
    """`target → [token-id set per example]` (disjoint per example, `NumberTokens.target_ids`)."""
    per = [reader.target_ids(target_sets(t)) for t in truth]
    return {name: [p[name] for p in per] for name in TARGETS}


def vocabulary(ds) -> list[str]:
    """The store's vocabulary (its `token_string` values, by token id) as strings; ValueError without one."""
    if "token_string" not in ds:
        raise ValueError("the store has no token_string (vocabulary); capture lens read-outs with this version")
    return [str(s) for s in ds["token_string"].values]


# --------------------------------------------------------------------------- tables
def _ks(k_all: int) -> tuple[int, ...]:
    return tuple(sorted({1, min(5, k_all)}))


def detection(readouts, truth: Sequence[Mapping[str, Any]], seed: int = 0, tokenizer: Any = None) -> list[dict[str, Any]]:
    """Detection rows (module doc)."""
    rows = []
    for lens, (ids, _, _, ds) in readouts.items():
        sets = target_id_sets(number_reader(ds, tokenizer), truth)
        chance_sets = {t: other_problem(s) for t, s in sets.items()}
        names = [str(s) for s in ds["step_name"].values]
        layers = [int(l) for l in ds["layer"].values]
        for k in _ks(ids.shape[-1]):
            for target in TARGETS:
                h = hits_ids(ids, sets[target], k)            # [example, step, layer]
                c = hits_ids(ids, chance_sets[target], k)
                for s, name in enumerate(names):
                    for li, layer in enumerate(layers):
                        ci = bootstrap_ci(h[:, s, li], seed=seed)
                        rows.append({"lens": lens, "step": s, "step_name": name, "layer": layer, "k": k,
                                     "target": target, "rate": ci.value, "ci_low": ci.low, "ci_high": ci.high,
                                     "chance": float(c[:, s, li].mean()), "n": ci.n})
    return rows


def _latent_steps(ds) -> list[int]:
    return [i for i, s in enumerate(ds["step_name"].values) if str(s).startswith("latent")]


def odd_even(readouts, truth, seed: int = 0, tokenizer: Any = None) -> dict[str, Any]:
    """Per latent detection (intermediate ∪ answer, top-k) and entropy; odd − even per example."""
    rows, parity, freq = [], [], []
    for lens, (ids, _, ent, ds) in readouts.items():
        sets = target_id_sets(number_reader(ds, tokenizer), truth)
        chain = [a | b for a, b in zip(sets["intermediate"], sets["answer"])]
        vocab = vocabulary(ds)
        latents = _latent_steps(ds)
        layers = [int(l) for l in ds["layer"].values]
        k = _ks(ids.shape[-1])[-1]
        h = hits_ids(ids, chain, k).astype(np.float64)
        for s in latents:
            latent = int(str(ds["step_name"].values[s])[6:])
            for li, layer in enumerate(layers):
                d = bootstrap_ci(h[:, s, li], seed=seed)
                row = {"lens": lens, "latent": latent, "parity": "odd" if latent % 2 else "even", "layer": layer,
                       "k": k, "detection": d.value, "detection_ci_low": d.low, "detection_ci_high": d.high}
                if ent is not None:
                    e = bootstrap_ci(ent[:, s, li], seed=seed)
                    row.update({"entropy": e.value, "entropy_ci_low": e.low, "entropy_ci_high": e.high})
                rows.append(row)
            if lens == "logit":
                top = Counter(vocab[i] for i in ids[:, s, -1, 0])
                n = ids.shape[0]
                freq.append({"latent": latent, "layer": layers[-1],
                             "top_tokens": [{"token": t, "fraction": c / n} for t, c in top.most_common(5)]})
        odd = [s for s in latents if int(str(ds["step_name"].values[s])[6:]) % 2]
        even = [s for s in latents if not int(str(ds["step_name"].values[s])[6:]) % 2]
        if odd and even:
            for li, layer in enumerate(layers):
                for what, arr in (("detection", h), ("entropy", ent)):
                    if arr is None:
                        continue
                    d = paired_bootstrap_diff(arr[:, odd, li].mean(1), arr[:, even, li].mean(1), seed=seed)
                    parity.append({"lens": lens, "layer": layer, "measure": what, "odd_minus_even": d.value,
                                   "ci_low": d.low, "ci_high": d.high,
                                   "odd": float(arr[:, odd, li].mean()), "even": float(arr[:, even, li].mean())})
    return {"rows": rows, "parity": parity, "token_frequency": freq}


def settling(readouts, truth, seed: int = 0, tokenizer: Any = None) -> list[dict[str, Any]]:
    """Per lens and layer: mean settle latent, and how often the settled token shows the answer or
    a number one operation away from it (chance: against another problem's answer); "shows" as in
    detection (whole spelling or first token).
    """
    rows = []
    answers = [float(t["answer"]) for t in truth]
    numbers = [list(map(float, t["operands"])) for t in truth]
    other_answers = other_problem(answers)
    for lens, (ids, _, _, ds) in readouts.items():
        latents = _latent_steps(ds)
        if len(latents) < 2:
            continue
        values = token_values(vocabulary(ds))
        reader = number_reader(ds, tokenizer)

        def one_op(token: int, value: float, answer: float, question: list[float]) -> bool:
            return one_op_away(value, answer, question) or token in reader.ids_of(one_op_candidates(answer, question))

        for li, layer in enumerate(int(l) for l in ds["layer"].values):
            top1 = ids[:, latents, li, 0]
            settle = np.asarray(latents)[settle_step(top1)]
            last = top1[:, -1]
            settled = values[last]
            is_answer = np.array([int(t) in reader.ids(a) for t, a in zip(last, answers)], dtype=np.float64)
            one_op_ = np.array([one_op(int(t), v, a, q) for t, v, a, q in zip(last, settled, answers, numbers)],
                               dtype=np.float64)
            chance = np.array([one_op(int(t), v, a, q) for t, v, a, q in zip(last, settled, other_answers, numbers)],
                              dtype=np.float64)
            number = np.isfinite(settled)
            s = bootstrap_ci(settle, seed=seed)
            o = bootstrap_ci(one_op_, seed=seed)
            rows.append({"lens": lens, "layer": int(layer), "settle_latent_mean": s.value, "settle_ci_low": s.low,
                         "settle_ci_high": s.high, "settled_is_number": float(number.mean()),
                         "settled_is_answer": float(is_answer.mean()), "one_op_from_answer": o.value,
                         "one_op_ci_low": o.low, "one_op_ci_high": o.high, "one_op_chance": float(chance.mean()),
                         "settle_histogram": {int(k): int(v) for k, v in sorted(Counter(settle.tolist()).items())}})
    return rows


def accuracy_vs_latents(acc_stores: Mapping[int, Any], default_k: int | None, seed: int = 0) -> dict[str, Any]:
    """Accuracy at each number of latents (bootstrap CI) and the paired difference to the default K."""
    rows = []
    correct = {k: ds["correct"].values.astype(np.float64) for k, ds in sorted(acc_stores.items())}
    for k, c in correct.items():
        ci = bootstrap_ci(c, seed=seed)
        row = {"num_latents": k, "accuracy": ci.value, "ci_low": ci.low, "ci_high": ci.high, "n": ci.n}
        if default_k in correct and len(correct[default_k]) == len(c):
            d = paired_bootstrap_diff(c, correct[default_k], seed=seed)
            row.update({"diff_vs_default": d.value, "diff_ci_low": d.low, "diff_ci_high": d.high})
        rows.append(row)
    early = [{**r, "answer_after_latent": r["num_latents"]} for r in rows
             if default_k is None or r["num_latents"] <= default_k]
    return {"accuracy_vs_latents": rows, "early_answer": early, "default_num_latents": default_k}


def answer_histogram(truth) -> list[dict[str, Any]]:
    """Count and fraction of problems per gold answer, sorted by answer."""
    counts = Counter(float(t["answer"]) for t in truth)
    n = len(truth)
    return [{"answer": a, "count": c, "fraction": c / n} for a, c in sorted(counts.items())]


def probe_table(ds, truth, folds: int = 3, seed: int = 0, max_chain: int = 2, progress: bool = False) -> list[dict]:
    """Linear probes from `hidden` to each intermediate result (1st, 2nd, …) and to the answer."""
    if "hidden" not in ds:
        return []
    labels = {"answer": np.array([t["answer"] for t in truth], dtype=np.float64)}
    for j in range(max_chain):
        labels[f"result{j + 1}"] = np.array([t["intermediates"][j] if len(t["intermediates"]) > j + 1 else np.nan
                                             for t in truth], dtype=np.float64)
    hidden = ds["hidden"].transpose("example", "step", "layer", "dim").values
    return probe_grid(hidden, labels, [str(s) for s in ds["step_name"].values], [int(l) for l in ds["layer"].values],
                      folds=folds, seed=seed, progress=progress)


def best_layers(det_rows, lens: str = "logit") -> dict[str, int]:
    """Per step name, the layer where the lens shows a chain value (intermediate or answer, top-k) most often."""
    score: dict[tuple[str, int], float] = {}
    kmax = max((r["k"] for r in det_rows if r["lens"] == lens), default=1)
    for r in det_rows:
        if r["lens"] == lens and r["k"] == kmax and r["target"] in ("intermediate", "answer"):
            score[(r["step_name"], r["layer"])] = score.get((r["step_name"], r["layer"]), 0.0) + r["rate"]
    best: dict[str, int] = {}
    for (step, layer), v in score.items():
        if step not in best or v > score[(step, best[step])]:
            best[step] = layer
    return best


def worked_examples(readouts, truth, det_rows, count: int = 3, top: int = 5) -> list[dict[str, Any]]:
    """Per latent, the best layer's top-k read-out of the first `count` examples."""
    if "logit" not in readouts:
        return []
    ids, probs, _, ds = readouts["logit"]
    vocab = vocabulary(ds)
    best = best_layers(det_rows)
    layers = [int(l) for l in ds["layer"].values]
    out = []
    for e in range(min(count, ids.shape[0])):
        steps = []
        for s, name in enumerate(str(x) for x in ds["step_name"].values):
            li = layers.index(best.get(name, layers[-1]))
            steps.append({"step_name": name, "layer": layers[li],
                          "tokens": [vocab[i].strip() for i in ids[e, s, li, :top]],
                          "probs": [round(float(p), 3) for p in probs[e, s, li, :top]]})
        row = {"id": truth[e]["id"], "question": str(ds["question"].values[e]), "answer": truth[e]["answer"],
               "intermediates": truth[e]["intermediates"], "steps": steps}
        if "correct" in ds:
            row["correct"] = bool(ds["correct"].values[e])
        out.append(row)
    return out


# --------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def figure_lens_heatmap(readouts, truth, out, example: int = 0):
    """Layer × step heatmap of top-1 tokens (annotated) coloured by probability, one panel per lens."""
    plt, sns = _plt()
    lenses = list(readouts)
    first = readouts[lenses[0]][3]
    steps = [str(s) for s in first["step_name"].values]
    fig, axes = plt.subplots(1, len(lenses), figsize=(1.1 * len(steps) * len(lenses) + 1.5, 3.6), squeeze=False)
    for ax, lens in zip(axes[0], lenses):
        ids, probs, _, ds = readouts[lens]
        vocab = vocabulary(ds)
        layers = [int(l) for l in ds["layer"].values]
        p = probs[example, :, :, 0].T[::-1]
        labels = np.array([[vocab[i].strip()[:6] for i in row] for row in ids[example, :, :, 0].T[::-1]])
        sns.heatmap(p, annot=labels, fmt="", cmap="magma", vmin=0, vmax=1, ax=ax, cbar=ax is axes[0][-1],
                    xticklabels=steps, yticklabels=layers[::-1], annot_kws={"fontsize": 7},
                    cbar_kws={"label": "top-1 probability"})
        ax.set_title(f"{lens} lens")
        ax.set_xlabel("step")
        ax.set_ylabel("layer")
        ax.tick_params(axis="x", rotation=45)
    t = truth[example]
    chain = ", ".join(f"{v:g}" for v in t["intermediates"])
    fig.suptitle(f"example {t['id']}: results {chain}; answer {t['answer']:g}", y=1.02)
    return save_figure(fig, out, "lens_heatmap")


def figure_detection(det_rows, out):
    """Plot top-k detection rates by step, per lens and target (one line per layer); save the figure."""
    plt, sns = _plt()
    df = pd.DataFrame(det_rows)
    kmax = df["k"].max()
    df = df[df["k"] == kmax]
    lenses = list(dict.fromkeys(df["lens"]))
    fig, axes = plt.subplots(len(lenses), len(TARGETS), figsize=(3.6 * len(TARGETS), 2.8 * len(lenses)),
                             squeeze=False, sharey=True)
    for r, lens in enumerate(lenses):
        for c, target in enumerate(TARGETS):
            ax = axes[r][c]
            sub = df[(df["lens"] == lens) & (df["target"] == target)]
            steps = list(dict.fromkeys(sub["step_name"]))
            for layer, g in sub.groupby("layer"):
                ax.plot(range(len(g)), g["rate"], marker="o", ms=3, label=f"layer {layer}")
                ax.fill_between(range(len(g)), g["ci_low"], g["ci_high"], alpha=0.15)
            chance = sub.groupby("step", sort=True)["chance"].mean()
            ax.plot(range(len(chance)), chance.values, "k--", lw=1, label="chance")
            ax.set_xticks(range(len(steps)), steps, rotation=45, fontsize=7)
            ax.set_title(f"{lens}: {target}", fontsize=10)
            if c == 0:
                ax.set_ylabel(f"top-{kmax} detection rate")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("How often the lens read-out holds each kind of problem value (95% bootstrap CI)", y=1.0)
    fig.tight_layout()
    return save_figure(fig, out, "detection_rates")


def figure_entropy(oe_rows, out, lens: str = "logit"):
    """Plot one lens's entropy and chain-value detection by latent, per layer; save it (None without rows)."""
    plt, sns = _plt()
    df = pd.DataFrame([r for r in oe_rows if r["lens"] == lens and "entropy" in r])
    if df.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (what, label) in zip(axes, (("entropy", "entropy (nats)"), ("detection", "chain-value detection"))):
        for layer, g in df.groupby("layer"):
            ax.errorbar(g["latent"], g[what], yerr=[g[what] - g[f"{what}_ci_low"], g[f"{what}_ci_high"] - g[what]],
                        marker="o", ms=4, capsize=2, label=f"layer {layer}")
        for lat in sorted(set(df["latent"])):
            if lat % 2:
                ax.axvspan(lat - 0.5, lat + 0.5, color="0.9", zorder=0)
        ax.set_xlabel("latent (odd shaded)")
        ax.set_ylabel(label)
    axes[0].set_title(f"{lens} lens entropy by latent")
    axes[1].set_title(f"{lens} lens: intermediate or answer in top-{int(df['k'].iloc[0])}")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, "entropy_by_latent")


def figure_probes(probe_rows, out):
    """Plot linear-probe accuracy heatmaps (layer × step), one per target; save it (None without rows)."""
    plt, sns = _plt()
    if not probe_rows:
        return None
    df = pd.DataFrame(probe_rows)
    targets = list(dict.fromkeys(df["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        sub = df[df["target"] == target]
        table = sub.pivot(index="layer", columns="step", values="accuracy").sort_index(ascending=False)
        names = sub.drop_duplicates("step").set_index("step")["step_name"]
        sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax, cbar=False,
                    xticklabels=[names[s] for s in table.columns], annot_kws={"fontsize": 7})
        ax.set_title(f"probe → {target} (majority {sub['baseline'].mean():.2f})", fontsize=10)
        ax.set_xlabel("step")
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle("Linear-probe accuracy (cross-validated over problems)", y=1.02)
    return save_figure(fig, out, "probe_accuracy")


def figure_accuracy(acc, out):
    """Plot accuracy against the number of latents with its CI; save it (None without rows)."""
    plt, _ = _plt()
    rows = acc["accuracy_vs_latents"]
    if not rows:
        return None
    k = [r["num_latents"] for r in rows]
    a = np.array([r["accuracy"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.errorbar(k, a, yerr=[a - np.array([r["ci_low"] for r in rows]), np.array([r["ci_high"] for r in rows]) - a],
                marker="o", capsize=3)
    if acc.get("default_num_latents") is not None:
        ax.axvline(acc["default_num_latents"], color="0.6", ls="--", label="trained K")
        ax.legend()
    ax.set_xlabel("number of latents (= answer forced after latent k)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("Accuracy vs number of latents (95% CI)")
    return save_figure(fig, out, "accuracy_vs_latents")


def figure_answers(hist, out):
    """Plot the gold-answer frequencies as a bar chart; save the figure."""
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar([h["answer"] for h in hist], [h["count"] for h in hist], width=0.9)
    ax.set_xlabel("gold answer")
    ax.set_ylabel("problems")
    ax.set_title(f"Answer frequencies ({sum(h['count'] for h in hist)} problems)")
    return save_figure(fig, out, "answer_histogram")


# --------------------------------------------------------------------------- driver
def find_inputs(path: str | Path) -> dict[str, Any]:
    """Stores and truth of a study directory or a single store."""
    path = Path(path)
    if (path / "lens.zarr").exists():
        stores = {"logit": path / "lens.zarr"}
        stores.update({p.stem: p for p in sorted(path.glob("tuned-*.zarr"))})
        acc = {}
        for p in sorted(path.glob("acc-k*.zarr")):
            m = re.fullmatch(r"acc-k(\d+)\.zarr", p.name)
            if m:
                acc[int(m.group(1))] = p
        return {"stores": stores, "acc": acc, "truth": path / "truth.jsonl"}
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"{path} is neither a lens-study directory (with lens.zarr) nor a store")
    return {"stores": {"logit": path}, "acc": {}, "truth": path.with_suffix(".truth.jsonl")}


def analyse(path: str | Path, out: str | Path | None = None, probes: bool = True, probe_folds: int = 3,
            seed: int = 0, progress: bool = False, tokenizer: Any = None) -> dict[str, Any]:
    """Every table (and, with `out`, every figure) of the lens study. `tokenizer` (a tokenizer.json
    or its directory, a tokenizer object) decides multi-token values; default: the store's own.
    """
    inputs = find_inputs(path)
    stores = {name: open_store(p) for name, p in inputs["stores"].items()}
    main = stores["logit"]
    ids = [str(x) for x in main["example"].values]
    for name, ds in stores.items():
        if [str(x) for x in ds["example"].values] != ids:
            raise ValueError(f"store {name} holds other examples than the lens store")
    truth = load_truth(inputs["truth"], main)
    readouts = lens_readouts(stores)
    if not readouts:
        raise ValueError(f"{path}: no lens read-outs (capture with --what hidden,lens)")
    acc_stores = {k: open_store(p) for k, p in inputs["acc"].items()}
    default_k = main.attrs.get("num_latents")
    det = detection(readouts, truth, seed, tokenizer)
    oe = odd_even(readouts, truth, seed, tokenizer)
    result: dict[str, Any] = {
        "examples": len(ids),
        "lenses": list(readouts),
        "number_rule": number_reader(main, tokenizer).rule if "token_string" in main else None,
        "detection": det,
        "odd_even": oe["rows"],
        "parity": oe["parity"],
        "token_frequency": oe["token_frequency"],
        "settling": settling(readouts, truth, seed, tokenizer),
        **accuracy_vs_latents(acc_stores, default_k, seed),
        "probes": probe_table(main, truth, probe_folds, seed, progress=progress) if probes else [],
        "answer_histogram": answer_histogram(truth),
        "worked_examples": worked_examples(readouts, truth, det),
        "best_layer": best_layers(det),
    }
    if "correct" in main:
        result["accuracy"] = bootstrap_ci(main["correct"].values.astype(float), seed=seed).as_dict()
    if out is not None:
        figs = [figure_lens_heatmap(readouts, truth, out), figure_detection(det, out),
                figure_entropy(oe["rows"], out), figure_probes(result["probes"], out),
                figure_accuracy(result, out), figure_answers(result["answer_histogram"], out)]
        result["figures"] = [str(f) for f in figs if f is not None]
    return result


@one_line_errors("analyses.lens_study")
def main(argv: list[str] | None = None) -> int:
    """Command line: analyse a lens study or store, optionally write results, print a summary or JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="lens-study directory or a store with lens read-outs")
    parser.add_argument("--out", default=None, help="write results.json and figures/ here")
    parser.add_argument("--no-probes", action="store_true", help="skip the linear probes")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer.json (or its directory) that decides multi-token values; "
                             "default: the one the store carries, else whole-token spellings only")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    result = analyse(args.store, args.out, probes=not args.no_probes, tokenizer=args.tokenizer)
    if args.out:
        write_results(args.out, result)
    if args.json:
        print(json.dumps(_clean(result)))
    else:
        print(f"{result['examples']} examples; lenses {result['lenses']}; "
              f"{len(result['detection'])} detection rows" + (f"; written to {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
