"""The steering study's report: its title, headline, summary line, sections and the comparison with the source,
all from the results `analyses.steering.analyse` returns (the study template `reporting.write_study` renders).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyses.steering import _latent_order, significant_conditions
from nnsight_codi.reporting import markdown_table, source_row

TITLE = "Steering study: activation-difference steering of the latent loop"


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def _site_label(row: dict[str, Any]) -> str:
    return f"hidden L{row['layer']}" if row["route"] == "hidden" else "KV"


def headline(results: dict[str, Any]) -> list[str]:
    """At most five summary lines: baseline, steering by site, seed design, headroom and patching."""
    base = results["baseline"]
    lines = [f"Unsteered accuracy {100 * base['accuracy']:.1f}% [{100 * base['ci_low']:.1f}, "
             f"{100 * base['ci_high']:.1f}] on n={base['n']} held-out problems"
             + (f"; with one extra latent step (the hidden rows' control) {100 * base['extra_step_accuracy']:.1f}%."
                if base.get("extra_step_accuracy") is not None else ".")]
    sites = results.get("by_site", [])
    if sites:
        parts = []
        for latent in [r["latent"] for r in sites if r["route"] == "kv"]:
            rows = [r for r in sites if r["latent"] == latent]
            kv = next(r for r in rows if r["route"] == "kv")
            hid = [r for r in rows if r["route"] == "hidden"]
            if not hid:
                parts.append(f"{latent}: KV {100 * kv['changed']:.0f}%")
                continue
            top = max(hid, key=lambda r: r["changed"])
            parts.append(f"{latent}: hidden {100 * top['changed']:.0f}% (L{top['layer']}) vs KV {100 * kv['changed']:.0f}%"
                         + ("" if top.get("route_diff_low") is None else
                            f" (diff {_pct(top['route_diff'])} [{_pct(top['route_diff_low'])}, "
                            f"{_pct(top['route_diff_high'])}])"))
        lines.append("Answers changed by steering, site by site (mean over pairs × coefficients; hidden at its most "
                     "effective layer vs its KV twin at the same latent, paired 95% CI in points): " + "; ".join(parts) + ".")
    seed = results.get("seed_design")
    if seed:
        lines.append("The seed's design: " + "; ".join(
            f"{r['what']} mean Δ accuracy {_pct(r['mean_delta'])} pts [{_pct(r['mean_delta_low'])}, "
            f"{_pct(r['mean_delta_high'])}], answers changed {100 * r['changed']:.0f}%" for r in seed) + ".")
    head = results.get("headroom")
    if head:
        b = head["baseline"]
        better = head["better_after_holm"]
        lines.append(f"Headroom ({head['problems']}): unsteered {100 * b['accuracy']:.1f}% [{100 * b['ci_low']:.1f}, "
                     f"{100 * b['ci_high']:.1f}] (n={b['n']}); {len(better)} of {head['tested']} steering conditions "
                     "beat it after Holm's correction (exact McNemar)"
                     + (": " + ", ".join(f"{r['condition']} {_pct(r['delta'])}" for r in better[:3]) if better else "")
                     + f"; {head['worse_after_holm']} are worse.")
    patches = [r for r in results["table"] if r["mode"] == "patch"]
    if patches:
        lines.append("Latent patching at the last latent: " + "; ".join(
            f"{r['patch']} Δ {_pct(r['delta'])} [{_pct(r['delta_low'])}, {_pct(r['delta_high'])}]" for r in patches) + ".")
    return lines[:5]


def summary_line(results: dict[str, Any]) -> str:
    """One line for a terminal: the seed's design by route, the matched-site comparison, the headroom."""
    base = results["baseline"]
    parts = [f"unsteered {100 * base['accuracy']:.0f}% (n={base['n']})"]
    seed = {r["what"].split(" ")[0]: r for r in results.get("seed_design", [])}
    for key, label in (("hidden", "hidden at latents 1–4"), ("KV", "KV at all latents")):
        if key in seed:
            r = seed[key]
            parts.append(f"{label} Δ {_pct(r['mean_delta'])} pts [{_pct(r['mean_delta_low'])}, {_pct(r['mean_delta_high'])}]")
    hid = [r for r in results.get("by_site", []) if r["route"] == "hidden" and r.get("route_diff_low") is not None]
    if hid:
        latents = sorted({r["latent"] for r in hid})
        best = {l: max((r for r in hid if r["latent"] == l), key=lambda r: r["changed"]) for l in latents}
        diffs = [best[l]["route_diff"] for l in latents]
        parts.append(f"matched sites: hidden (best layer) − KV twin {_pct(min(diffs))} to {_pct(max(diffs))} pts of "
                     "answers changed")
    head = results.get("headroom")
    if head:
        parts.append(f"headroom ({100 * head['baseline']['accuracy']:.0f}% baseline): {len(head['better_after_holm'])}/"
                     f"{head['tested']} conditions better after Holm")
    return "; ".join(parts)


def report_sections(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's sections (before the figures and the comparison with the source), from the results."""
    config, summary = results["config"], results["sweep"]
    table = pd.DataFrame(results["table"])
    sig = significant_conditions(table)
    cols = ["condition", "accuracy", "acc_low", "acc_high", "delta", "delta_low", "delta_high", "n"]
    site_cols = ["latent", "route", "layer", "conditions", "changed", "changed_low", "changed_high", "mean_delta",
                 "mean_delta_low", "mean_delta_high", "significant", "route_diff", "route_diff_low", "route_diff_high"]
    sections = [
        ("Headline", "\n".join(f"- {h}" for h in results["headline"])),
        ("What was run", f"{summary['conditions']} conditions × {summary['examples']} problems "
                         f"({summary['runs']} runs; the analysis uses the problems every condition finished). Vectors: "
                         f"mean(latent A) − mean(latent B) over {config['reference_limit']} held-out reference problems "
                         f"(seed {config['reference_seed']}), pairs {config['pairs']}, coefficients "
                         f"{', '.join(f'{c:+g}' for c in config['coefs'])}; site set `{config['sites']}`. Hidden: "
                         "`coef × v` added to the residual stream at (latent k, layer l), then the loop runs one extra "
                         "latent step (as the seed did, so the last latent's edit reaches the cache); KV: Δkeys and "
                         "Δvalues (coef_k = coef_v) added after the last latent, before eot, to latent k's cache entry "
                         "alone (`latent<k>`) or to every latent entry (`all`). Δ = accuracy − unsteered accuracy on "
                         "the same problems, 95% paired bootstrap CI. *Answers changed* = the share of problems whose "
                         "answer differs from the unsteered answer (the control for hidden rows: `none+x`, the extra "
                         "step alone). (A, B, +c) and (B, A, −c) are the same edit."),
        ("Routes site by site", "Mean over pairs × coefficients at each site; `route_diff` = hidden − KV twin at the "
         "same latent in answers changed, paired bootstrap CI over problems.\n\n"
         + markdown_table(results.get("by_site", []), site_cols)),
        ("The seed's design (a subset of the matched sites)", markdown_table(results.get("seed_design", []))),
        ("Baselines and summary by mode", markdown_table(table[table["mode"].isin(["none", "patch"])][cols].to_dict(
            "records")) + "\n\n" + markdown_table([{"mode": k, **v} for k, v in results["by_mode"].items()])),
    ]
    if "headroom" in results:
        h = results["headroom"]
        sections.append(("Headroom: where the unsteered model can rise",
                         f"{h['problems']}: unsteered {100 * h['baseline']['accuracy']:.1f}% "
                         f"[{100 * h['baseline']['ci_low']:.1f}, {100 * h['baseline']['ci_high']:.1f}] on "
                         f"n={h['baseline']['n']}. Each steering condition is tested against the unsteered run with "
                         "an exact McNemar test (two-sided, on the problems where the two disagree); p-values are "
                         f"Holm-corrected over the {h['tested']} steering conditions. Hidden rows are also tested "
                         "against `none+x` (the same number of latents)"
                         + (f"; on these problems the extra step alone changes {100 * h['extra_step_changed']:.1f}% of "
                            f"answers (Δ accuracy {_pct(h['extra_step']['delta'])} pts), which the hidden rows' "
                            "*answers changed* includes" if h.get("extra_step_changed") is not None else "")
                         + ".\n\n"
                         + markdown_table(h["top"], ["condition", "accuracy", "delta", "delta_low", "delta_high", "p",
                                                     "p_holm", "better", "worse", "delta_vs_extra_step",
                                                     "p_holm_vs_extra_step"])
                         + "\n\n" + markdown_table(h.get("by_site", []), site_cols)))
    sections.append(("Conditions that differ significantly from the unsteered run (largest |Δ| first, top 30)",
                     markdown_table(sig[cols].head(30).to_dict("records"))))
    return sections


def compare_with_source(results: dict[str, Any]) -> list[dict[str, str]]:
    """The "Compared with the source" rows of the steering report, from the results alone (the seed:
    "Latent Reasoning Sprint #3", CODI-Llama-1B; its numbers are not in our reference notes, so the
    rows compare the pattern the seed reported, not sizes).
    """
    src = "Sprint #3 (seed, CODI-Llama-1B)"
    rows = []

    def pts(x):
        return f"{100 * x:+.1f}"

    base = results["baseline"]
    control = (f"unsteered {100 * base['accuracy']:.1f}%; extra step alone Δ {pts(base['extra_step_delta'])} "
               f"[{pts(base['extra_step_delta_low'])}, {pts(base['extra_step_delta_high'])}]"
               if base.get("extra_step_delta") is not None else f"unsteered {100 * base['accuracy']:.1f}%")
    rand = next((r for r in results["table"] if r["condition"] == "patch:random"), None)
    if rand:
        control += f"; random patch of the last latent Δ {pts(rand['delta'])} [{pts(rand['delta_low'])}, {pts(rand['delta_high'])}]"
    seed = {r["what"].split(" ")[0]: r for r in results.get("seed_design", [])}
    claims = {"hidden": ("hidden-state steering at latents 1–4 (+ one extra step) leaves accuracy unchanged", False),
              "KV": ("KV-cache steering of the cache eot reads moves accuracy", True)}
    for route, (claim, claims_a_move) in claims.items():
        r = seed.get(route)
        if not r:
            continue
        moved = r["mean_delta_low"] > 0 or r["mean_delta_high"] < 0
        rows.append(source_row(src, claim,
                               f"mean Δ {pts(r['mean_delta'])} pts [{pts(r['mean_delta_low'])}, {pts(r['mean_delta_high'])}], "
                               f"answers changed {100 * r['changed']:.1f}% [{100 * r['changed_low']:.1f}, "
                               f"{100 * r['changed_high']:.1f}] ({r['conditions']} conditions, n={r['n']})", control,
                               "agree" if moved == claims_a_move else "differ",
                               "the mean Δ's CI excludes 0" if moved else "the mean Δ's CI includes 0"))
    sites = results.get("by_site", [])
    hid = [r for r in sites if r["route"] == "hidden" and r.get("route_diff_low") is not None]
    if hid:
        latents = sorted({r["latent"] for r in hid}, key=_latent_order)
        kv = {r["latent"]: r for r in sites if r["route"] == "kv"}
        best = {l: max((r for r in hid if r["latent"] == l), key=lambda r: r["changed"]) for l in latents}
        moves = [l for l in latents if best[l]["mean_delta_low"] > 0 or best[l]["mean_delta_high"] < 0]
        kv_more = [l for l in latents if best[l]["route_diff_high"] < 0]
        diffs = [best[l]["route_diff"] for l in latents]
        layers = sorted({best[l]["layer"] for l in latents}, key=str)
        weak = [r for r in hid if r["layer"] not in layers]
        ours = (f"hidden at its most effective layer ({', '.join(f'L{l}' for l in layers)}) changes "
                f"{100 * min(best[l]['changed'] for l in latents):.1f}–{100 * max(best[l]['changed'] for l in latents):.1f}% "
                f"of answers vs the KV twin's {100 * min(kv[l]['changed'] for l in latents):.1f}–"
                f"{100 * max(kv[l]['changed'] for l in latents):.1f}% (hidden − KV {pts(min(diffs))} to {pts(max(diffs))} pts; "
                f"KV ahead at {len(kv_more)}/{len(latents)} latents); its Δ accuracy CI excludes 0 at "
                f"{len(moves)}/{len(latents)} latents"
                + (f"; at the other layers at most {100 * max(r['changed'] for r in weak):.1f}%" if weak else "")
                + f" (n={best[latents[0]]['n']})")
        verdict = "differ" if moves else "agree"
        rows.append(source_row(src, "the KV route moves the model where the hidden route does not (read as: a "
                               "property of the route)", ours, "the same latent, vectors and coefficients (matched "
                               "sites); extra step alone as above", verdict,
                               "at matched latents the hidden route moves accuracy too, close to its KV twin: the "
                               "seed's contrast came mostly from the site (the last layer), not the route"
                               if verdict == "differ" else "the hidden route moves nothing at any matched latent"))
    head = results.get("headroom")
    if head:
        b = head["baseline"]
        best = head["best"][0] if head.get("best") else None
        rows.append(source_row(src, "sought steering that raises accuracy (the outcome is not in our reference notes)",
                               f"{len(head['better_after_holm'])} of {head['tested']} conditions beat the unsteered run "
                               f"after Holm (exact McNemar); best Δ {pts(best['delta']) if best else 'n/a'} pts"
                               + (f" [{pts(best['delta_low'])}, {pts(best['delta_high'])}] ({best['condition']})" if best else ""),
                               f"unsteered {100 * b['accuracy']:.1f}% [{100 * b['ci_low']:.1f}, {100 * b['ci_high']:.1f}] "
                               f"on {head['problems']} (n={b['n']})", "not comparable",
                               "our notes do not record whether the seed found an improvement; on the main problems "
                               f"the baseline ({100 * base['accuracy']:.1f}%) leaves no room, so this is measured "
                               "where it can rise"))
    return rows
