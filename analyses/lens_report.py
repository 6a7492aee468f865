"""The lens study's report: its title, headline, sections and the comparison with the source, all from the
results `analyses.lens_study.analyse` returns (the study template `reporting.write_study` renders).
"""

from __future__ import annotations

from typing import Any

TITLE = "Lens study: logit lens, tuned lens, probes and latent read-outs"


def _best(rows, **match) -> dict | None:
    cand = [r for r in rows if all(r.get(k) == v for k, v in match.items()) and r.get("rate") is not None]
    return max(cand, key=lambda r: r["rate"] - r["chance"], default=None)


def headline(result: dict[str, Any]) -> list[str]:
    """<= 5 one-line findings with numbers and CIs."""
    lines = []
    det = result["detection"]
    kmax = max(r["k"] for r in det)
    tuned = [l for l in result["lenses"] if l != "logit"]
    best_tuned = max(tuned, key=lambda l: (_best(det, lens=l, k=kmax, target="intermediate") or {"rate": 0})["rate"],
                     default=None)
    for lens in ["logit"] + ([best_tuned] if best_tuned else []):
        best = _best(det, lens=lens, k=kmax, target="intermediate")
        ans = _best(det, lens=lens, k=kmax, target="answer")
        if best and ans:
            lines.append(f"{lens} lens top-{kmax}: intermediate result at {best['step_name']}/layer {best['layer']} "
                         f"{best['rate']:.0%} [{best['ci_low']:.0%}, {best['ci_high']:.0%}] (chance {best['chance']:.0%}); "
                         f"answer at {ans['step_name']}/layer {ans['layer']} {ans['rate']:.0%} "
                         f"[{ans['ci_low']:.0%}, {ans['ci_high']:.0%}] (chance {ans['chance']:.0%})")
    acc = {r["num_latents"]: r for r in result["accuracy_vs_latents"]}
    k = result.get("default_num_latents")
    if acc and k in acc and 0 in acc:
        lines.append(f"accuracy {acc[k]['accuracy']:.1%} [{acc[k]['ci_low']:.1%}, {acc[k]['ci_high']:.1%}] with K={k} "
                     f"latents vs {acc[0]['accuracy']:.1%} [{acc[0]['ci_low']:.1%}, {acc[0]['ci_high']:.1%}] with none")
    par = [p for p in result["parity"] if p["lens"] == "logit" and p["measure"] == "detection"]
    if par:
        p = max(par, key=lambda r: abs(r["odd_minus_even"]))
        lines.append(f"odd − even latents (logit lens, layer {p['layer']}): chain-value detection "
                     f"{p['odd_minus_even']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}]")
    probes = [r for r in result["probes"] if r["target"] == "answer" and r["accuracy"] == r["accuracy"]]
    if probes:
        p = max(probes, key=lambda r: r["accuracy"])
        lines.append(f"linear probe → answer best at {p['step_name']}/layer {p['layer']}: {p['accuracy']:.0%} "
                     f"[{p['ci_low']:.0%}, {p['ci_high']:.0%}] vs majority {p['baseline']:.0%}")
    return lines[:5]


def compare_with_source(result: dict[str, Any]) -> list[dict[str, str]]:
    """The "Compared with the source" rows of the lens report, from the results alone: where the
    intermediate values show (CODI-Llama-1B: the 3rd and 5th of six latents, Cywiński et al.), the
    odd/even reading of CODI-GPT-2 (Goyal et al.: odd steps compute, even steps store the values), and
    accuracy vs the number of latents.
    """
    from nnsight_codi.reporting import source_row, verdict

    rows = []
    det = result["detection"]
    kmax = max(r["k"] for r in det)
    best: dict[str, dict] = {}
    for r in det:
        if r["lens"] == "logit" and r["k"] == kmax and r["target"] == "intermediate" and r["step_name"].startswith("latent"):
            if r["step_name"] not in best or r["rate"] - r["chance"] > best[r["step_name"]]["rate"] - best[r["step_name"]]["chance"]:
                best[r["step_name"]] = r
    post = "Cywiński et al. post (CODI-Llama-1B, experiments 2–3)"
    if best:
        order = sorted(best, key=lambda s: -(best[s]["rate"] - best[s]["chance"]))
        top = best[order[0]]

        def cell(name):
            r = best[name]
            return (f"{name} {100 * r['rate']:.0f}% [{100 * r['ci_low']:.0f}, {100 * r['ci_high']:.0f}] "
                    f"(layer {r['layer']}, chance {100 * r['chance']:.0f}%)")

        same = set(order[:2]) == {"latent3", "latent5"}
        rows.append(source_row(
            post, "the intermediate values show at the 3rd and 5th of six latents",
            f"logit lens top-{kmax}, best layer per latent: strongest at " + cell(order[0])
            + "; " + "; ".join(cell(n) for n in ("latent3", "latent5") if n in best and n != order[0])
            + f" (n={top['n']})",
            "chance = the same read-out scored against another problem's values", "agree" if same else "differ",
            "the two strongest latents are the 3rd and 5th" if same else
            f"here the values show most at {order[0]} (the tiny CODI, 2–3 operations, 6 latents)"))
        said = verdict(top["ci_low"], top["ci_high"], above=top["chance"], n=top.get("n"))
        rows.append(source_row(
            post, "a logit lens reads the intermediate values out of the latents",
            f"best cell {cell(order[0])}", f"chance {100 * top['chance']:.0f}%", said,
            {"agree": "the CI lies above chance", "differ": "the CI lies at or below chance"}.get(
                said, "the CI reaches chance (or too few problems)")))
    par = [p for p in result["parity"] if p["lens"] == "logit" and p["measure"] == "detection"]
    if par:
        p = max(par, key=lambda r: abs(r["odd_minus_even"]))
        said = verdict(p["ci_low"], p["ci_high"], below=0.0, n=p.get("n"))  # the claim: even > odd
        if said == "inconclusive":
            why = "the CI of odd − even includes 0: no odd/even difference shown in where the lens reads values"
        elif said == "agree":
            why = "values read more at even latents, where the scratchpad reading stores them"
        else:
            why = ("values read more at odd latents: there is an alternation, but the values "
                   "show at the odd latents, which in the scratchpad reading compute, not at "
                   "the even latents that store them")
        rows.append(source_row(
            "Scratchpad Thinking (Goyal et al., CODI-GPT-2)",
            "odd latents compute and even latents store the values (so a lens reads values at even latents)",
            f"chain-value detection odd − even {p['odd_minus_even']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] "
            f"(logit lens, layer {p['layer']}; odd {p['odd']:.2f}, even {p['even']:.2f})",
            "0 (no alternation)", said, why))
    acc = {r["num_latents"]: r for r in result["accuracy_vs_latents"]}
    k = result.get("default_num_latents")
    if acc and k in acc and 0 in acc:
        a, z = acc[k], acc[0]
        d_lo, d_hi = z.get("diff_ci_low"), z.get("diff_ci_high")
        rises = verdict(d_lo, d_hi, below=0.0, n=a.get("n"))  # K=0 − K=trained below 0
        enough = min((n for n, r in acc.items() if r["ci_high"] >= a["accuracy"]), default=k)
        rows.append(source_row(
            "Cywiński et al. post (experiment 1)", "accuracy rises with the number of latent iterations (0..6)",
            f"K={k}: {100 * a['accuracy']:.1f}% [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]; reached with "
            f"{enough} latent(s); K={max(acc)}: {100 * acc[max(acc)]['accuracy']:.1f}% (n={a.get('n', '')})",
            f"K=0 (answer directly): {100 * z['accuracy']:.1f}% [{100 * z['ci_low']:.1f}, {100 * z['ci_high']:.1f}]",
            rises,
            ("K=0 − K=trained " + f"{100 * z['diff_vs_default']:+.1f} pts [{100 * d_lo:+.1f}, {100 * d_hi:+.1f}]"
             if d_lo is not None else "") + "; their numbers are not in our notes, so we compare the direction"))
    return rows


def report_sections(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's sections (before the figures and the comparison with the source), from the results."""
    from nnsight_codi.reporting import markdown_table

    det = result["detection"]
    kmax = max(r["k"] for r in det)
    best_rows = []
    for lens in result["lenses"]:
        for target in ("intermediate", "answer", "near_miss", "operand"):
            b = _best(det, lens=lens, k=kmax, target=target)
            if b:
                best_rows.append({"lens": lens, "target": target, "step": b["step_name"], "layer": b["layer"],
                                  "rate": b["rate"], "ci_low": b["ci_low"], "ci_high": b["ci_high"],
                                  "chance": b["chance"]})
    latent_rows = [{"lens": r["lens"], "step": r["step_name"], "layer": r["layer"], "target": r["target"],
                    "rate": r["rate"], "ci": f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]", "chance": r["chance"]}
                   for r in det if r["k"] == kmax and r["target"] in ("intermediate", "answer")
                   and r["layer"] == result["best_layer"].get(r["step_name"], -1) and r["lens"] == "logit"]
    acc = [{k: r[k] for k in ("num_latents", "accuracy", "ci_low", "ci_high") if k in r}
           for r in result["accuracy_vs_latents"]]
    probes = [{k: r[k] for k in ("target", "step_name", "layer", "accuracy", "ci_low", "ci_high", "baseline")}
              for r in sorted(result["probes"], key=lambda r: -r["accuracy"] if r["accuracy"] == r["accuracy"] else 1)
              if r["target"] in ("answer", "result1", "result2")][:9]
    parity = [{k: p[k] for k in ("lens", "layer", "measure", "odd", "even", "odd_minus_even", "ci_low", "ci_high")}
              for p in result["parity"]]
    settle = [{k: s[k] for k in ("lens", "layer", "settle_latent_mean", "settled_is_number", "settled_is_answer",
                                 "one_op_from_answer", "one_op_ci_low", "one_op_ci_high", "one_op_chance")}
              for s in result["settling"]]
    freq = "\n".join(f"- latent {f['latent']}: " + ", ".join(f"'{t['token'].strip()}' {t['fraction']:.0%}"
                                                             for t in f["top_tokens"]) for f in result["token_frequency"])
    examples = []
    for ex in result["worked_examples"]:
        steps = "; ".join(f"{s['step_name']} (L{s['layer']}): " + " ".join(
            f"{t}:{p:.2f}" for t, p in zip(s["tokens"], s["probs"])) for s in ex["steps"])
        examples.append(f"- **{ex['id']}** (results {ex['intermediates']}, answer {ex['answer']:g}, "
                        f"correct {ex.get('correct')}): {steps}")
    hist = sorted(result["answer_histogram"], key=lambda h: -h["count"])[:5]
    return [
        ("Headline", "\n".join(f"- {h}" for h in result["headline"])),
        ("Best detection per lens and target (top-%d, max over step × layer of rate − chance)" % kmax,
         markdown_table(best_rows)),
        ("Logit lens per step at its best layer", markdown_table(latent_rows)),
        ("Accuracy vs number of latents = early answering after latent k", markdown_table(acc) +
         "\n\nStopping the loop after latent k, feeding eot and decoding greedily is the same computation as "
         "running with k latents (steps 0..k of the loop do not depend on K; tested), so one table serves both."),
        ("Odd vs even latents", markdown_table(parity) + "\n\nTop-1 tokens chosen per latent (last layer):\n" + freq),
        ("Settling", markdown_table(settle)),
        ("Linear probes (best cells)", markdown_table(probes)),
        ("Answer frequencies (most common)", markdown_table(hist)),
        ("Worked examples: best layer's top-5 read-out per step", "\n".join(examples)),
    ]
