"""Lens study: logit lens, tuned lenses, linear probes and latent read-outs on a CODI model.

    python runs/lens_study.py --out out/lens_study                       # tiny CODI, about a minute
    python runs/lens_study.py --limit 1000 --out out/lens_study_1000     # the README measurement
    python runs/lens_study.py --model zen-E/CODI-gpt2 --dataset ../shared/data/gsm8k/test.jsonl \\
        --tuned-lens out/lens-gpt2 --out out/lens_gpt2

Writes into OUT:
- `truth.jsonl`: each problem's answer, intermediate results and question numbers;
- `lens.zarr`: `hidden`, logit-lens read-outs (`lens_*`), the unembedding and vocabulary, answers;
- `lenses/<mode>/`: tuned lenses trained on `text`, `latents`, `latent:N` problems disjoint from
  the evaluated ones (tuned-lens layout), unless `--tuned-lens` names existing ones;
- `tuned-<name>.zarr`: each tuned lens's read-outs (`tuned_lens_*`);
- `acc-k<k>.zarr`: answers with k = 0..K+extra latents (early answering after latent k is the
  same computation as running with k latents: the loop's steps 0..k do not depend on K);
- `results.json`, `figures/*.png`, `report.md` (from `analyses.lens_study`).
Finished stores and lenses are reused on a rerun; interrupted ones resume.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python runs/lens_study.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Config:
    """Lens study configuration (defaults: the tiny CODI, about a minute on a laptop CPU)."""

    model: str = field(default="tiny", metadata={"help": "CODI model (tiny, a converted dir, a hub id)"})
    dataset: str = field(default="synthetic", metadata={"help": "synthetic, gsm8k or a local file"})
    limit: int = field(default=200, metadata={"help": "problems evaluated"})
    seed: int | None = field(default=None, metadata={"help": "synthetic seed (default: the model's held-out test seed)"})
    tuned_lens: str | None = field(default=None, metadata={"help": "existing tuned-lens dirs, comma-separated "
                                                                   "(default: train one per --train-modes)"})
    train_modes: tuple[str, ...] = field(default=("text", "latents", "latent:3"),
                                         metadata={"help": "tuned lenses to train (text, latents, latent:N)"})
    train_limit: int = field(default=300, metadata={"help": "problems the tuned lenses train on"})
    train_seed: int = field(default=2, metadata={"help": "synthetic seed of the lens training problems"})
    train_steps: int | None = field(default=None, metadata={"help": "tuned-lens optimiser steps (default: scaled)"})
    lens_k: int = field(default=10, metadata={"help": "top-k of the stored read-outs"})
    extra_latents: int = field(default=4, metadata={"help": "accuracy is measured for K = 0 .. trained K + this"})
    probes: bool = field(default=True, metadata={"help": "train linear probes"})
    probe_folds: int = field(default=3, metadata={"help": "cross-validation folds of the probes"})
    batch_size: int = 64
    device: str = "cpu"


def demo_config() -> Config:
    """Smaller: 64 problems, one latent-trained tuned lens, K up to trained K + 2."""
    return Config(limit=64, train_modes=("latents",), train_limit=128, extra_latents=2)


def _mode_name(mode: str) -> str:
    return mode.replace(":", "")


def _dataset(codi, config: Config, seed: int, limit: int):
    from nnsight_codi.data.sources import load_eval_dataset, synthetic_options

    if config.dataset == "synthetic":
        return load_eval_dataset("synthetic", limit=limit, seed=seed, **synthetic_options(codi))
    return load_eval_dataset(config.dataset, limit=limit, seed=seed)


def _capture(out: Path, codi, config: Config, seed: int, variables, progress: bool, **kw) -> None:
    from nnsight_codi.capture import CaptureConfig, run_capture

    cfg = CaptureConfig(model=config.model, dataset=config.dataset, seed=seed, limit=config.limit,
                        variables=tuple(variables), batch_size=config.batch_size, device=config.device,
                        lens_k=config.lens_k, **kw)
    run_capture(out, cfg, codi=codi, progress=progress)


def _train_lenses(codi, config: Config, out: Path, eval_questions: set[str], progress: bool) -> dict[str, Path]:
    from nnsight_codi.lens.train import TrainConfig, collect, default_steps, parse_data_mode, train_tuned_lens

    if config.tuned_lens:
        paths = [Path(p) for p in config.tuned_lens.split(",") if p.strip()]
        for p in paths:
            if not (p / "config.json").is_file():
                raise FileNotFoundError(f"tuned lens {p} not found (needs config.json + params.pt)")
        return {p.name: p for p in paths}
    for mode in config.train_modes:
        parse_data_mode(mode, codi.num_latents)  # bad modes fail before any work
    lenses = {}
    train = None
    for mode in config.train_modes:
        path = out / "lenses" / _mode_name(mode)
        lenses[_mode_name(mode)] = path
        if (path / "params.pt").is_file() and (path / "config.json").is_file():
            continue
        if train is None:
            train = _dataset(codi, config, config.train_seed, config.train_limit)
            train = train.filter(lambda q: q not in eval_questions, input_columns="question")
        data = collect(codi, train, mode, progress=progress)
        steps = config.train_steps or default_steps(len(data), 512)
        train_tuned_lens(codi, data, TrainConfig(steps=steps), out=path, progress=progress,
                         meta={"data": mode, "dataset": config.dataset, "seed": config.train_seed,
                               "limit": config.train_limit})
    return lenses


def run(config: Config, out, progress: bool = True) -> dict[str, Any]:
    """Capture, train, analyse; write `results.json`, `figures/`, `report.md`; return the results."""
    from analyses.lens_study import analyse
    from nnsight_codi.evaluation import direct_answer_budget
    from nnsight_codi.lens.values import dataset_truth
    from nnsight_codi.loading import load_model
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.limit < 10:
        raise ValueError(f"limit must be >= 10 (bootstrap CIs and probes need examples), got {config.limit}")
    codi = load_model(config.model, device=config.device)
    seed = config.seed if config.seed is not None else int(codi.codi_config.extra.get("test_seed", 1))
    dataset = _dataset(codi, config, seed, config.limit)
    truth = dataset_truth(dataset)
    (out / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    budget = direct_answer_budget(codi)

    lenses = _train_lenses(codi, config, out, set(dataset["question"]), progress)
    _capture(out / "lens.zarr", codi, config, seed,
             ("hidden", "lens", "unembed", "answer_pred", "answer_gold", "correct"), progress,
             max_new_tokens=budget)
    for name, path in lenses.items():
        _capture(out / f"tuned-{name}.zarr", codi, config, seed, ("tuned_lens", "correct"), progress,
                 lens_path=str(path), max_new_tokens=budget)
    for k in range(0, codi.num_latents + config.extra_latents + 1):
        _capture(out / f"acc-k{k}.zarr", codi, config, seed, ("answer_pred", "answer_gold", "correct"), progress,
                 num_latents=k, max_new_tokens=budget)

    result = analyse(out, out, probes=config.probes, probe_folds=config.probe_folds, progress=progress)
    result["config"] = {**asdict(config), "seed": seed, "max_new_tokens": budget}
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_outputs(out, result)
    return result


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


def write_outputs(out, result: dict[str, Any]) -> None:
    """results.json and report.md from a results dict (also used to refresh a finished study's report)."""
    from nnsight_codi.reporting import write_report, write_results

    from nnsight_codi.reporting import comparison_section

    result["headline"] = headline(result)
    result["compared_with_source"] = compare_with_source(result)
    write_results(out, result)
    write_report(out, "Lens study: logit lens, tuned lens, probes and latent read-outs", report_sections(result),
                 figures=result.get("figures", []), config=result.get("config"),
                 closing=[comparison_section(result["compared_with_source"])])


def compare_with_source(result: dict[str, Any]) -> list[dict[str, str]]:
    """The "Compared with the source" rows of the lens report, from the results alone: where the
    intermediate values show (CODI-Llama-1B: the 3rd and 5th of six latents, Cywiński et al.), the
    odd/even reading of CODI-GPT-2 (Goyal et al.: odd steps compute, even steps store the values), and
    accuracy vs the number of latents."""
    from nnsight_codi.reporting import source_row

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
        above = top["ci_low"] > top["chance"]
        rows.append(source_row(
            post, "a logit lens reads the intermediate values out of the latents",
            f"best cell {cell(order[0])}", f"chance {100 * top['chance']:.0f}%", "agree" if above else "differ",
            "the CI lies above chance" if above else "not above chance"))
    par = [p for p in result["parity"] if p["lens"] == "logit" and p["measure"] == "detection"]
    if par:
        p = max(par, key=lambda r: abs(r["odd_minus_even"]))
        sig = p["ci_low"] > 0 or p["ci_high"] < 0
        if not sig:
            verdict, why = "differ", "no odd/even difference in where the lens reads values"
        elif p["odd_minus_even"] < 0:
            verdict, why = "agree", "values read more at even latents, where the scratchpad reading stores them"
        else:
            verdict, why = "differ", ("values read more at odd latents: there is an alternation, but the values "
                                      "show at the odd latents, which in the scratchpad reading compute, not at "
                                      "the even latents that store them")
        rows.append(source_row(
            "Scratchpad Thinking (Goyal et al., CODI-GPT-2)",
            "odd latents compute and even latents store the values (so a lens reads values at even latents)",
            f"chain-value detection odd − even {p['odd_minus_even']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] "
            f"(logit lens, layer {p['layer']}; odd {p['odd']:.2f}, even {p['even']:.2f})",
            "0 (no alternation)", verdict, why))
    acc = {r["num_latents"]: r for r in result["accuracy_vs_latents"]}
    k = result.get("default_num_latents")
    if acc and k in acc and 0 in acc:
        a, z = acc[k], acc[0]
        d_lo, d_hi = z.get("diff_ci_low"), z.get("diff_ci_high")
        rises = d_hi is not None and d_hi < 0
        enough = min((n for n, r in acc.items() if r["ci_high"] >= a["accuracy"]), default=k)
        rows.append(source_row(
            "Cywiński et al. post (experiment 1)", "accuracy rises with the number of latent iterations (0..6)",
            f"K={k}: {100 * a['accuracy']:.1f}% [{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}]; reached with "
            f"{enough} latent(s); K={max(acc)}: {100 * acc[max(acc)]['accuracy']:.1f}% (n={a.get('n', '')})",
            f"K=0 (answer directly): {100 * z['accuracy']:.1f}% [{100 * z['ci_low']:.1f}, {100 * z['ci_high']:.1f}]",
            "agree" if rises else "differ",
            ("K=0 − K=trained " + f"{100 * z['diff_vs_default']:+.1f} pts [{100 * d_lo:+.1f}, {100 * d_hi:+.1f}]"
             if d_lo is not None else "") + "; their numbers are not in our notes, so we compare the direction"))
    return rows


def report_sections(result: dict[str, Any]) -> list[tuple[str, str]]:
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


if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "out/lens_study", __doc__))
