"""Attention across latents: where each step looks, and the compute/store alternation read-outs.

    python -m analyses.attention STORE --out DIR [--json] [--top-k 5]

Reads a store with `attention` (each step's query row averaged over all layers and heads, as the
CODI authors average it) and the per-example `source_token` / `source_kind` coordinates (what
each attended position is), so no tokenizer or model is needed. Measures, per latent step:

- **role mass**: attention on number tokens, other prompt tokens, bot, the previous latent,
  earlier latents, the step itself and eot (sums to 1 per step);
- **number focus**: number-token mass / all prompt-token mass;
- **operand mass**: mass on the prompt numbers that are operands of the current chain step
  (latent k ↔ chain step ⌈k/2⌉, from the `cot` coordinate: synthetic `<< a op b = c >>` or
  GSM8K `<<a*b=c>>` annotations); NaN where the chain is shorter or no operand is in the prompt;
- **odd vs even**: per example, the mean over odd latents minus the mean over even latents
  (paired bootstrap CI) — CODI's reading is that odd latents compute (look at operands) and
  even latents store (look at the previous latent).

Writes `DIR/results.json`, `DIR/figures/attention_by_source.png`, `DIR/figures/alternation.png`.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from nnsight_codi.data.chains import annotations
from nnsight_codi.errors import one_line_errors
from nnsight_codi.reporting import markdown_table, save_figure, source_row, verdict, write_results
from nnsight_codi.stats import Interval, bootstrap_ci, paired_bootstrap_diff
from nnsight_codi.store import open_store
from nnsight_codi.store.positions import number_spans, top_k_sources

TITLE = "Attention across latents (tiny CODI)"
ROLES = ("number", "prompt", "bot", "previous latent", "earlier latents", "self", "eot")
"""Source roles relative to the querying step (`self` = the step's own position)."""


def chain_operands(cot: str) -> list[list[float]]:
    """Operands of each annotated step of a chain of thought.

    Example:
        >>> chain_operands("<< 84 / 3 = 28 >> << 28 - 1 = 27 >>")
        [[84.0, 3.0], [28.0, 1.0]]
        >>> chain_operands("Half: <<48/2=24>>24 then <<1,200*3+2=3602>>")
        [[48.0, 2.0], [1200.0, 3.0, 2.0]]
    """
    return [[float(x.replace(",", "")) for x in a.operands()] for a in annotations(cot)]


def text(arr: xr.DataArray) -> np.ndarray:
    """A string coordinate as a fixed-width numpy unicode array (zarr returns StringDType)."""
    return np.array(np.asarray(arr.values).tolist(), dtype=str)


def require_attention(ds: xr.Dataset) -> None:
    """Raise a one-line `ValueError` when the store cannot be analysed."""
    missing = [n for n in ("attention", "source_kind", "source_token") if n not in ds.variables]
    if missing:
        raise ValueError(f"store {ds.attrs.get('store_path', '')} lacks {missing}: capture with "
                         "--what attention (source_token/source_kind are written by captures of this version)")


def query_positions(attention: np.ndarray) -> np.ndarray:
    """`Int[ndarray, "example step"]`: each step's query position (its last attended position)."""
    finite = np.isfinite(attention)
    last = attention.shape[-1] - 1 - np.argmax(finite[..., ::-1], axis=-1)
    return np.where(finite.any(-1), last, -1)


def role_of_positions(kinds: np.ndarray, query: np.ndarray) -> np.ndarray:
    """`Int[ndarray, "example step position"]` role index into `ROLES` (-1 = not a source).

    `kinds` is `source_kind` `(example, position)`, `query` the `(example, step)` query positions.
    """
    n, p = kinds.shape
    pos = np.arange(p)[None, None, :]
    q = query[:, :, None]
    kind = np.broadcast_to(kinds[:, None, :], (n, query.shape[1], p))
    latent = np.char.startswith(kind.astype(str), "latent")
    roles = np.full(kind.shape, -1, dtype=np.int8)
    roles[kind == "number"] = ROLES.index("number")
    roles[kind == "prompt"] = ROLES.index("prompt")
    roles[kind == "bot"] = ROLES.index("bot")
    roles[latent] = ROLES.index("earlier latents")
    roles[latent & (pos == q - 1)] = ROLES.index("previous latent")
    roles[(kind == "eot") | (kind == "eos")] = ROLES.index("eot")
    roles[pos == q] = ROLES.index("self")
    roles[pos > q] = -1
    return roles


def _attention(ds: xr.Dataset, variable: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """`variable` as float64 `[example, step, *extra, position]` and its extra dims (block, head)."""
    require_attention(ds)
    if variable not in ds:
        raise ValueError(f"store has no {variable} (capture with --attention-detail "
                         f"{'head' if variable == 'attention_heads' else 'layer'})")
    arr = ds[variable]
    extra = tuple(d for d in arr.dims if d not in ("example", "step", "position"))
    arr = arr.transpose("example", "step", *extra, "position")
    return np.asarray(arr.values, dtype=np.float64), extra


def _coords(ds: xr.Dataset, extra: tuple[str, ...]) -> dict[str, Any]:
    coords = {"example": ds["example"].values, "step": ds["step"].values,
              "step_name": ("step", ds["step_name"].values)}
    coords.update({d: ds[d].values if d in ds.coords else np.arange(ds.sizes[d]) for d in extra})
    return coords


def role_mass(ds: xr.Dataset, variable: str = "attention") -> xr.DataArray:
    """Attention mass per source role: `(example, step, role)` — with `variable="attention_layers"`
    `(example, step, block, role)`; rows sum to 1 (NaN: no row).
    """
    att, extra = _attention(ds, variable)
    query = query_positions(np.asarray(ds["attention"].values, dtype=np.float64))
    roles = role_of_positions(text(ds["source_kind"]), query)
    roles = roles.reshape(roles.shape[:2] + (1,) * len(extra) + roles.shape[2:])
    w = np.nan_to_num(att)
    mass = np.stack([(w * (roles == r)).sum(-1) for r in range(len(ROLES))], axis=-1)
    mass[~np.isfinite(att).any(-1)] = np.nan
    return xr.DataArray(mass, dims=("example", "step", *extra, "role"),
                        coords={**_coords(ds, extra), "role": list(ROLES)})


def operand_mass(ds: xr.Dataset, variable: str = "attention") -> xr.DataArray:
    """`(example, step[, block])`: mass on prompt numbers that are operands of latent k's chain
    step ⌈k/2⌉.
    """
    att, extra = _attention(ds, variable)
    att = np.nan_to_num(att)
    names = [str(s) for s in ds["step_name"].values]
    out = np.full(att.shape[:-1], np.nan)
    cots = ds["cot"].values if "cot" in ds.coords else [""] * ds.sizes["example"]
    tokens = text(ds["source_token"])
    kinds = text(ds["source_kind"])
    for i in range(att.shape[0]):
        chain = chain_operands(str(cots[i]))
        spans = number_spans(list(tokens[i]), list(kinds[i]))
        for s, name in enumerate(names):
            if not name.startswith("latent"):
                continue
            j = (int(name[6:]) + 1) // 2
            if j > len(chain):
                continue
            pos = [p for span, value in spans if value in chain[j - 1] for p in span]
            if pos:
                out[i, s] = att[i, s][..., pos].sum(-1)
    return xr.DataArray(out, dims=("example", "step", *extra), coords=_coords(ds, extra))


def top_attended(ds: xr.Dataset, k: int = 5) -> xr.Dataset:
    """Top-k attended source positions of every step: `position`, `weight`, `token`, `kind`,
    each `(example, step, rank)` (position -1 / weight NaN where a row has fewer sources).
    """
    require_attention(ds)
    position, weight = top_k_sources(np.asarray(ds["attention"].values), k)
    valid = position >= 0
    order = np.maximum(position, 0)
    tokens = text(ds["source_token"])
    kinds = text(ds["source_kind"])
    rows = np.arange(position.shape[0])[:, None, None]
    tok = np.where(valid, tokens[rows, order], "")
    kind = np.where(valid, kinds[rows, order], "")
    dims = ("example", "step", "rank")
    return xr.Dataset({"position": (dims, position), "weight": (dims, weight), "token": (dims, tok),
                       "kind": (dims, kind)},
                      coords={"example": ds["example"].values, "step": ds["step"].values,
                              "step_name": ("step", ds["step_name"].values), "rank": np.arange(order.shape[-1])})


def readouts(ds: xr.Dataset, variable: str = "attention") -> dict[str, xr.DataArray]:
    """The per-(example, step[, block]) alternation read-outs: number focus, previous-latent mass,
    operand mass.
    """
    mass = role_mass(ds, variable)
    prompt = mass.sel(role="number") + mass.sel(role="prompt")
    focus = (mass.sel(role="number") / prompt.where(prompt > 0)).drop_vars("role")
    prev = mass.sel(role="previous latent").drop_vars("role")
    names = [str(s) for s in ds["step_name"].values]
    first = [i for i, n in enumerate(names) if n == "latent1"]
    if first:  # latent1 has no previous latent (its previous position is bot)
        prev = prev.where(prev["step"] != first[0])
    return {"number focus": focus, "previous latent": prev, "operand mass": operand_mass(ds, variable)}


def latent_steps(ds: xr.Dataset) -> list[tuple[int, int]]:
    """`(step index, latent number k)` of the latent steps."""
    return [(i, int(str(n)[6:])) for i, n in enumerate(ds["step_name"].values) if str(n).startswith("latent")]


def uniform_attention(ds: xr.Dataset) -> xr.Dataset:
    """`ds` with each step's attention replaced by a uniform row over the positions it attends (the
    read-outs of this store are then their base rates: number focus = the share of number tokens
    among the prompt tokens, previous latent = 1 / attended positions, operand mass = the share of
    attended positions that are the step's operands).
    """
    att = np.asarray(ds["attention"].values, dtype=np.float64)
    finite = np.isfinite(att)
    count = finite.sum(-1, keepdims=True)
    uniform = np.where(finite, 1.0 / np.maximum(count, 1), np.nan)
    out = ds.copy()
    out["attention"] = (ds["attention"].dims, uniform)
    return out.drop_vars([v for v in ("attention_layers", "attention_heads") if v in out])


def number_base_rate(ds: xr.Dataset, seed: int = 0) -> dict[str, float | int]:
    """The share of number tokens among each example's prompt tokens (`source_kind`), mean and CI over
    examples: what number focus would be if attention ignored what a token is.
    """
    kinds = text(ds["source_kind"])
    numbers = (kinds == "number").sum(-1)
    prompt = numbers + (kinds == "prompt").sum(-1)
    share = np.where(prompt > 0, numbers / np.maximum(prompt, 1), np.nan)
    return bootstrap_ci(share, seed=seed).as_dict()


def alternation_table(ds: xr.Dataset, seed: int = 0) -> pd.DataFrame:
    """One row per (read-out, latent): mean with a bootstrap 95% CI over examples, and `uniform`: the
    same read-out under uniform attention over the attended positions (its base rate).
    """
    rows = []
    base = readouts(uniform_attention(ds))
    for name, arr in readouts(ds).items():
        values = arr.values
        for s, k in latent_steps(ds):
            ci = bootstrap_ci(values[:, s], seed=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                uniform = float(np.nanmean(base[name].values[:, s]))
            rows.append({"readout": name, "step": f"latent{k}", "latent": k,
                         "parity": "odd" if k % 2 else "even", **ci.as_dict(), "uniform": uniform})
    return pd.DataFrame(rows)


def _odd_minus_even(values: np.ndarray, steps: list[tuple[int, int]], seed: int) -> Interval | None:
    """Paired CI of mean(odd latents) − mean(even latents) of `values` `[example, step]`."""
    odd = [s for s, k in steps if k % 2]
    even = [s for s, k in steps if k % 2 == 0]
    if not odd or not even:
        return None
    with warnings.catch_warnings():  # an example with no finite value gives NaN (dropped)
        warnings.simplefilter("ignore", RuntimeWarning)
        a = np.nanmean(values[:, odd], axis=1)
        b = np.nanmean(values[:, even], axis=1)
    keep = np.isfinite(a) & np.isfinite(b)
    return paired_bootstrap_diff(a[keep], b[keep], seed=seed)


def odd_even(ds: xr.Dataset, seed: int = 0) -> dict[str, Interval]:
    """Per read-out: paired bootstrap CI of (mean over odd latents − mean over even latents)."""
    out = {}
    for name, arr in readouts(ds).items():
        diff = _odd_minus_even(arr.values, latent_steps(ds), seed)
        if diff is not None:
            out[name] = diff
    return out


def block_table(ds: xr.Dataset, seed: int = 0) -> pd.DataFrame:
    """With `attention_layers`: one row per (read-out, block, latent) — the mean with its CI — and
    per (read-out, block) the odd − even difference (`latent` = "odd-even").
    """
    rows = []
    steps = latent_steps(ds)
    for name, arr in readouts(ds, "attention_layers").items():
        arr = arr.transpose("example", "step", "block")
        for b, block in enumerate(arr["block"].values):
            values = arr.values[:, :, b]
            for s, k in steps:
                rows.append({"readout": name, "block": int(block), "latent": str(k),
                             **bootstrap_ci(values[:, s], seed=seed).as_dict()})
            diff = _odd_minus_even(values, steps, seed)
            if diff is not None:
                rows.append({"readout": name, "block": int(block), "latent": "odd-even", **diff.as_dict()})
    return pd.DataFrame(rows)


def summarize(ds: xr.Dataset, seed: int = 0) -> dict[str, Any]:
    """Everything `results.json` holds: role mass by step, the alternation table, odd vs even."""
    mass = role_mass(ds)
    by_step = mass.mean("example", skipna=True)
    table = alternation_table(ds, seed)
    diffs = odd_even(ds, seed)
    result: dict[str, Any] = {
        "examples": int(ds.sizes["example"]),
        "steps": [str(s) for s in ds["step_name"].values],
        "roles": list(ROLES),
        "role_mass_by_step": by_step.values.round(5).tolist(),
        "alternation": table.to_dict("records"),
        "odd_minus_even": {k: v.as_dict() for k, v in diffs.items()},
        "number_base_rate": number_base_rate(ds, seed),
    }
    if "attention_layers" in ds:
        result["by_block"] = block_table(ds, seed).to_dict("records")
    if "correct" in ds:
        result["accuracy"] = float(np.asarray(ds["correct"].values).mean())
    return result


def headline(summary: dict[str, Any]) -> list[str]:
    """<= 5 one-line findings with numbers and CIs: each read-out per latent, then odd − even; with a
    dashboard in the results (the study's run), the fifth line is the dashboard's.
    """
    lines = _findings(summary)
    dash = summary.get("dashboard")
    if dash:
        render = (f", first render {dash['first_render_ms']:.0f} ms in headless Chromium"
                  if dash.get("first_render_ms") is not None else "")
        lines = lines[:4] + [f"dashboard: {dash['examples']} examples, {dash['bytes'] / 1e6:.2f} MB{render} "
                             f"(dashboard/index.html)"]
    return lines


def report_sections(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's sections (before the figures and the comparison with the source), from the results."""
    dash = result.get("dashboard", {})
    table = [r for r in result["alternation"]]
    odd_even = [{"read-out": k, **v} for k, v in result["odd_minus_even"].items()]
    sections = [
        ("Headline", "\n".join(f"- {line}" for line in result["headline"])),
        ("Per latent (mean over examples, 95% bootstrap CI)",
         markdown_table(table, ["readout", "step", "parity", "value", "ci_low", "ci_high", "n", "uniform"])
         + "\n\n`uniform` = the read-out if attention were uniform over the attended positions (the base rate: "
         f"number tokens are {100 * result['number_base_rate']['value']:.1f}% of prompt tokens in this store)."),
        ("Odd minus even latents (paired bootstrap over examples)",
         markdown_table(odd_even, ["read-out", "value", "ci_low", "ci_high", "n"])),
        ("Per block: odd minus even latents (heads averaged; paired bootstrap)",
         markdown_table([r for r in result.get("by_block", []) if r["latent"] == "odd-even"],
                        ["readout", "block", "value", "ci_low", "ci_high", "n"])),
    ]
    if dash:  # the study's run writes one beside the results
        sections.append((
            "Dashboard", f"[dashboard/index.html](dashboard/index.html): {dash['examples']} examples, "
                         f"{dash['bytes'] / 1e6:.2f} MB; logit-lens layer {dash['layer']} by default"
                         + (f"; first render {dash['first_render_ms']:.0f} ms" if dash.get("first_render_ms") else "")
                         + ("\n\n![dashboard](dashboard/screenshot.png)" if dash.get("screenshot") else "")))
    sections.append((
        "Definitions", "Attention is each step's query row averaged over all layers and heads. Number focus = "
                       "mass on number tokens / mass on all prompt tokens. Operand mass = mass on the prompt "
                       "numbers that are operands of chain step ⌈k/2⌉ for latent k. Previous latent = mass on "
                       "z_(k-1) (latent1's previous position is bot, so it has none)."))
    return sections


def _findings(summary: dict[str, Any]) -> list[str]:
    lines = []
    table = pd.DataFrame(summary["alternation"])
    for name in dict.fromkeys(table.readout) if len(table) else []:
        part = table[table.readout == name]
        cells = ", ".join(f"z{int(r.latent)} {r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
                          for r in part.itertuples() if np.isfinite(r.value))
        uniform = [u for u in getattr(part, "uniform", pd.Series(dtype=float)) if np.isfinite(u)]
        if cells and uniform:
            cells += f" (uniform attention: {min(uniform):.2f}" + (f"–{max(uniform):.2f})" if max(uniform) - min(uniform) >= 0.005 else ")")
        d = summary["odd_minus_even"].get(name)
        tail = (f"; odd − even {d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
                if d and d["n"] else "")
        if cells:
            lines.append(f"{name} per latent: {cells}{tail}")
    blocks = pd.DataFrame(summary.get("by_block", []))
    if len(blocks):
        diffs = blocks[(blocks.latent == "odd-even") & (blocks.n > 0)]
        cells = []
        for name in ("previous latent", "number focus"):
            part = diffs[diffs.readout == name]
            if len(part):
                r = part.loc[part.value.abs().idxmax()]
                cells.append(f"{name} {r.value:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] at block {int(r.block)}")
        if cells:
            lines.append("largest odd − even per block: " + "; ".join(cells))
    return lines[:5]


def compare_with_source(result: dict[str, Any]) -> list[dict[str, str]]:
    """The "Compared with the source" rows of the attention report, from the results alone. Source:
    Goyal et al., "Scratchpad Thinking" (CODI-GPT-2): odd latent steps compute, even steps store.
    """
    src = "Scratchpad Thinking (Goyal et al., CODI-GPT-2)"
    rows = []
    table = pd.DataFrame(result.get("alternation", []))
    base = result.get("number_base_rate")
    diffs = result.get("odd_minus_even", {})
    blocks = pd.DataFrame(result.get("by_block", []))

    focus = table[table.readout == "number focus"] if len(table) else table
    if len(focus) and base:
        lo, hi = float(focus.value.min()), float(focus.value.max())
        above = bool((focus.ci_low > base["ci_high"]).all())
        below = bool((focus.ci_high < base["ci_low"]).all())
        enough = int(focus.n.max()) >= 30
        rows.append(source_row(
            src, "latent steps attend to number tokens (their 'number focus')",
            f"number share of prompt attention {lo:.3f}–{hi:.3f} across latents (each CI within ±"
            f"{float((focus.ci_high - focus.ci_low).max()) / 2:.3f}; n={int(focus.n.max())})",
            f"number tokens are {100 * base['value']:.1f}% [{100 * base['ci_low']:.1f}, {100 * base['ci_high']:.1f}] "
            "of prompt tokens (uniform attention)",
            ("agree" if above else "differ" if below else "inconclusive") if enough else "inconclusive",
            ("above the base rate at every latent" if above else "below the base rate at every latent" if below
             else "not above the base rate at every latent")
            + "; their ratio (number / other tokens) and our share differ in form, both compare against no preference"))
    d = diffs.get("number focus")
    if d:
        said = verdict(d["ci_low"], d["ci_high"], above=0.0, n=d.get("n"))
        why = {"agree": "odd > even averaged over layers and heads",
               "differ": "odd ≤ even averaged over layers and heads"}.get(said, "the CI includes 0, averaged over blocks")
        per_block = ""
        if len(blocks):
            part = blocks[(blocks.latent == "odd-even") & (blocks.readout == "number focus") & (blocks.n > 0)]
            pos = part[part.ci_low > 0]
            per_block = (f"; per block: odd > even at block(s) {', '.join(str(int(b)) for b in pos.block)}"
                         if len(pos) else "; per block: no block with odd > even")
            if len(pos) and said != "agree" and (d.get("n") or 0) >= 30:
                said = "agree"
                why = ("only per block (block " + ", ".join(str(int(b)) for b in pos.block)
                       + "): averaged over layers and heads the latents do not differ")
        rows.append(source_row(src, "odd latents compute: they look at numbers more than even latents",
                               f"number focus odd − even {d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                               f"(layers and heads averaged, n={d['n']}){per_block}", "0 (no alternation)", said,
                               why))
    d = diffs.get("previous latent")
    if d:
        prev = table[table.readout == "previous latent"] if len(table) else table
        uni = prev["uniform"].dropna() if "uniform" in prev else pd.Series(dtype=float)
        said = verdict(d["ci_low"], d["ci_high"], below=0.0, n=d.get("n"))
        rows.append(source_row(src, "even latents store: they read the previous latent (scratchpad)",
                               f"previous-latent mass odd − even {d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                               f"(n={d['n']})", "0 (no alternation)" + (
                                   f"; uniform attention gives {uni.min():.3f}–{uni.max():.3f} per latent" if len(uni) else ""),
                               said, {"agree": "even latents look more at their predecessor",
                                      "differ": "even latents look less at their predecessor"}.get(
                                   said, "the CI includes 0: no difference shown")))
    return rows


def plot_by_source(ds: xr.Dataset, out: str | Path) -> Path:
    """Heatmap of mean attention mass, step (rows) × source role (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    mass = role_mass(ds).mean("example", skipna=True)
    frame = pd.DataFrame(mass.values, index=[str(s) for s in ds["step_name"].values], columns=list(ROLES))
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(frame) + 1.6))
    sns.heatmap(frame, annot=True, fmt=".2f", cmap="rocket_r", vmin=0, ax=ax,
                cbar_kws={"label": "mean attention mass"})
    ax.set_xlabel("attended source (relative to the querying step)")
    ax.set_ylabel("querying step")
    ax.set_title(f"Where each step attends (all layers and heads averaged; {ds.sizes['example']} examples)")
    ax.tick_params(axis="x", rotation=20)
    return save_figure(fig, out, "attention_by_source")


def plot_alternation(ds: xr.Dataset, out: str | Path, seed: int = 0) -> Path:
    """Per latent: number focus, previous-latent and operand mass with 95% bootstrap CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = alternation_table(ds, seed)
    names = list(dict.fromkeys(table.readout))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), sharex=True)
    palette = sns.color_palette("deep", 2)
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        part = table[table.readout == name]
        colors = [palette[0] if p == "odd" else palette[1] for p in part.parity]
        ax.errorbar(part.latent, part.value, yerr=[part.value - part.ci_low, part.ci_high - part.value],
                    fmt="none", ecolor="gray", capsize=3)
        ax.scatter(part.latent, part.value, c=colors, s=40, zorder=3)
        ax.plot(part.latent, part.value, color="lightgray", zorder=1)
        ax.set_title(name)
        ax.set_xlabel("latent k")
        ax.set_xticks(sorted(part.latent.unique()))
        ax.set_ylim(bottom=0)
    np.atleast_1d(axes)[0].set_ylabel("mean over examples (95% CI)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=palette[0], label="odd latent"),
               plt.Line2D([], [], marker="o", ls="", color=palette[1], label="even latent")]
    fig.legend(handles=handles, loc="upper right", frameon=False)
    fig.suptitle("Compute/store alternation read-outs per latent", y=1.02)
    fig.tight_layout()
    return save_figure(fig, out, "alternation")


def plot_by_block(table: pd.DataFrame, out: str | Path) -> Path:
    """Heatmaps block × latent of each read-out (means), odd − even in the last column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    names = list(dict.fromkeys(table.readout))
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 0.55 * table.block.nunique() + 2.0))
    for ax, name in zip(np.atleast_1d(axes), names, strict=True):
        part = table[table.readout == name].pivot(index="block", columns="latent", values="value")
        cols = sorted([c for c in part.columns if c != "odd-even"], key=int) + \
            (["odd-even"] if "odd-even" in part.columns else [])
        part = part[cols]
        part.columns = [f"z{c}" if c != "odd-even" else "odd−even" for c in cols]
        sns.heatmap(part, annot=True, fmt=".2f", cmap="vlag", center=0, ax=ax, cbar=False)
        ax.set_title(name)
        ax.set_xlabel("latent (last column: odd − even)")
        ax.set_ylabel("block (attention layer)")
    fig.suptitle("Alternation read-outs per block (heads averaged; mean over examples)", y=1.02)
    fig.tight_layout()
    return save_figure(fig, out, "alternation_by_block")


def analyse(store: str | Path | xr.Dataset, out: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Summary (+ `headline`) of a store; with `out`, also results.json and the two figures."""
    ds = open_store(store) if not isinstance(store, xr.Dataset) else store
    require_attention(ds)
    result = summarize(ds, seed)
    result["headline"] = headline(result)
    result["compared_with_source"] = compare_with_source(result)
    if out is not None:
        result["figures"] = [str(plot_by_source(ds, out)), str(plot_alternation(ds, out, seed))]
        if "by_block" in result:
            result["figures"].append(str(plot_by_block(pd.DataFrame(result["by_block"]), out)))
        write_results(out, result)
    return result


@one_line_errors("analyses.attention")
def main(argv: Sequence[str] | None = None) -> int:
    """Command line: analyse an attention store, print the headline (or JSON); return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("--out", default=None, help="directory for results.json and figures/")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = analyse(args.store, args.out, args.seed)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print("\n".join(result["headline"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
