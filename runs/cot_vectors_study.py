"""CoT steering vectors on an instruct LM (Zhang & Viteri): extract → (layer × coef) grid on a dev
split → direct / CoT / single@best / continuous@best on a test split.

    python runs/cot_vectors_study.py [--model tiny-instruct] --out out/cot_vectors

Writes `OUT/vectors.zarr` (the vector store), `OUT/grid.jsonl` (resumable grid), `OUT/test/*.json`
(per-condition outputs, reused on rerun), `OUT/results.json` (`vectors`: the store's path;
`conditions`: rows `{name, layer, coef, accuracy, ci_low, ci_high, reasoning_rate, n}`),
`OUT/figures/*.png` and `OUT/report.md`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # `python runs/cot_vectors_study.py`: import the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnsight_codi.reporting import write_study  # noqa: E402
from nnsight_codi.stats import paired_bootstrap_diff, significant  # noqa: E402


@dataclass
class Config:
    """A CoT-vector study (defaults: the tiny instruct model, about a minute on a laptop CPU)."""

    model: str = field(default="tiny-instruct", metadata={"help": "instruct LM: tiny-instruct, a HF dir or hub id"})
    dataset: str = field(default="synthetic", metadata={"help": "question set: synthetic, a local jsonl, paper, gsm8k"})
    extract_limit: int = field(default=64, metadata={"help": "questions the vectors are extracted from"})
    dev_limit: int = field(default=32, metadata={"help": "dev questions of the grid"})
    test_limit: int = field(default=100, metadata={"help": "held-out test questions"})
    layers: tuple[int, ...] = field(default=(), metadata={"help": "grid layers (default: every block output 1..L)"})
    coefs: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    schedules: tuple[str, ...] = ("single", "continuous")
    max_new_tokens: int = 48
    greedy_extract: bool = field(default=False, metadata={"help": "greedy continuations at extraction (default: sampled)"})
    sample_seed: int = 0
    seed: int = 0
    positions: str = field(default="generated", metadata={"help": "generated | all | last_prompt"})
    batch_size: int = 16
    device: str = "cpu"
    remote: str | None = field(default=None, metadata={"help": "local | ndif | an NDIF host"})
    control_seed: int = field(default=0, metadata={"help": "seed of the random-direction control vectors"})
    report_only: bool = field(default=False, metadata={
        "help": "re-render OUT/report.md (and its comparison with the source) from OUT/results.json, "
                "without loading the model"})


def demo_config() -> Config:
    """The demo-size configuration (fewer questions, four coefficients)."""
    # the paper's small continuous coefficients (0.5, 1) and two larger ones
    return Config(extract_limit=32, dev_limit=16, test_limit=48, coefs=(0.5, 1.0, 2.0, 8.0))


def model_synthetic_options(model) -> dict:
    """The synthetic-problem distribution an instruct model was trained on (its `instruct.json`), else {}."""
    path = Path(str(getattr(model._module.config, "_name_or_path", ""))) / "instruct.json"
    if not path.is_file():
        return {}
    opts = json.loads(path.read_text()).get("synthetic_options", {})
    return {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}


def _condition_result(model, data, condition, vectors, config: Config, path: Path, remote,
                      weights: str | None, prompt_mode: str | None = None) -> dict:
    """Evaluate one test condition, or reuse its saved outputs when they were made the same way
    (same questions, model weights — `weights`, its fingerprint — vectors, prompt and decoding budget).
    `prompt_mode` overrides the condition's prompt (e.g. "none": no instruction).
    """
    from nnsight_codi.cot import evaluate_condition
    from nnsight_codi.cot.cot_accuracy import ConditionResult
    from nnsight_codi.cot.grid import array_digest
    from nnsight_codi.models.fingerprint import same_weights

    key = {"condition": condition.label(), "ids": [str(i) for i in data["id"]], "max_new_tokens": config.max_new_tokens,
           "vector_table": array_digest(vectors) if condition.schedule else None,
           "prompt_mode": prompt_mode or condition.prompt_mode}
    saved = json.loads(path.read_text()) if path.exists() else None
    if saved is not None and {k: saved.get(k) for k in key} == key and same_weights(saved.get("model_weights"), weights):
        res = ConditionResult(condition, saved["ids"], saved["texts"], saved["correct"], saved["reasoning"],
                              saved["lengths"])
    else:
        res = evaluate_condition(model, data, condition, vectors, max_new_tokens=config.max_new_tokens,
                                 batch_size=config.batch_size, greedy=True, seed=config.seed, remote=remote,
                                 progress=False, prompt_mode=prompt_mode)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**key, "model_weights": weights, "texts": res.texts, "correct": res.correct,
                                    "reasoning": res.reasoning, "lengths": res.lengths}))
    return {"summary": {**res.summary(seed=config.seed), "prompt": prompt_mode or condition.prompt_mode},
            "correct": np.asarray(res.correct, float), "texts": res.texts, "reasoning": res.reasoning}



def run(config: Config, out, progress: bool = True) -> dict:
    """Run the CoT-vector study into `out` (extract, grid, test conditions, report); return the results."""
    from analyses import cot_vectors
    from analyses.cot_vectors import analyse, gap_recovery, random_like
    from nnsight_codi.cot import (
        Condition,
        ExtractConfig,
        best_points,
        chain_agreement,
        extract_vectors,
        load_questions,
        load_vectors,
        most_chains_points,
        run_grid,
    )
    from nnsight_codi.cot.cot_steering import check_schedule
    from nnsight_codi.loading import load_instruct_model
    from nnsight_codi.models.fingerprint import model_weights
    from nnsight_codi.tracing.remote import check_remote, remote_value

    out = Path(out)
    if config.report_only:
        return report_only(out)
    for s in config.schedules:
        check_schedule(s)
    for name in ("extract_limit", "dev_limit", "test_limit", "batch_size", "max_new_tokens"):
        if getattr(config, name) < 1:  # before the extraction, not after it
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    remote = check_remote(remote_value(config.remote))
    model = load_instruct_model(config.model, config.device, "float32", remote)
    num_layers = int(model._module.config.num_hidden_layers)
    layers = tuple(config.layers) or tuple(range(1, num_layers + 1))
    options = model_synthetic_options(model) if config.dataset == "synthetic" else {}
    store = out / "vectors.zarr"
    ecfg = ExtractConfig(synthetic=options, model=config.model, dataset=config.dataset, split="train", seed=config.seed,
                         limit=config.extract_limit, greedy=config.greedy_extract, sample_seed=config.sample_seed,
                         max_new_tokens=config.max_new_tokens, positions=config.positions,
                         batch_size=config.batch_size, device=config.device, remote=remote)
    extraction = extract_vectors(store, ecfg, model=model, progress=progress)
    vectors = load_vectors(store)
    dev = load_questions(config.dataset, split="dev", limit=config.dev_limit, seed=config.seed, **options)
    test = load_questions(config.dataset, split="test", limit=config.test_limit, seed=config.seed, **options)
    fingerprint = {k: v for k, v in asdict(config).items()
                   if k not in ("test_limit", "device", "remote", "batch_size", "report_only")}
    fingerprint["layers"] = list(layers)
    grid = run_grid(model, dev, vectors, out / "grid.jsonl", config.schedules, layers, config.coefs,
                    fingerprint=fingerprint, progress=progress, max_new_tokens=config.max_new_tokens,
                    batch_size=config.batch_size, seed=config.seed, remote=remote)
    best = best_points(grid)
    weights = model_weights(model)  # once: every saved condition output is checked against it
    # unsteered dev references (for the heatmap title)
    dev_ref = {name: _condition_result(model, dev, Condition(name), None, config,
                                       out / "dev" / f"{name}.json", remote, weights)["summary"]["accuracy"]
               for name in ("direct", "cot")}
    conditions = [Condition("direct"), Condition("cot")] + [
        Condition(s, best[s]["layer"], best[s]["coef"]) for s in config.schedules if s in best]
    results = {c.name: _condition_result(model, test, c, vectors, config, out / "test" / f"{c.label()}.json", remote,
                                         weights)
               for c in conditions}
    rows = [r["summary"] for r in results.values()]
    direct, cot = results["direct"], results["cot"]
    gap_ci = paired_bootstrap_diff(cot["correct"], direct["correct"], seed=config.seed)
    gap = gap_ci.value if significant(gap_ci) and gap_ci.value > 0 else None  # recovery needs a real gap
    comparisons = {}
    for name, r in results.items():
        if name == "direct":
            continue
        d = paired_bootstrap_diff(r["correct"], direct["correct"], seed=config.seed)
        comparisons[name] = {"minus_direct": d.value, "ci_low": d.low, "ci_high": d.high,
                             "gap_recovered": (d.value / gap) if gap else None,
                             "gap_recovered_ci": gap_recovery(direct["correct"], cot["correct"], r["correct"],
                                                              seed=config.seed)}
        if name != "cot":
            comparisons[name]["chain_vs_cot"] = chain_agreement(r["texts"], cot["texts"])
    # the point of each schedule where the vector makes the most outputs reason, on the test split:
    # does a chain the vector elicits match the one the CoT prompt writes, and where does it go wrong?
    chain_points = []
    for s, point in most_chains_points(grid).items():
        c = Condition(s, point["layer"], point["coef"])
        r = _condition_result(model, test, c, vectors, config, out / "test" / f"{c.label()}.json", remote, weights)
        chain_points.append({**r["summary"], "selected_by": "reasoning_rate",
                             **chain_agreement(r["texts"], cot["texts"])})
    # per layer, the dev-best coefficient on the test split: is the effect only where the vector meets
    # the unembedding (layer L), or also deeper in the residual stream?
    per_layer = []
    for s in config.schedules:
        for layer in layers:
            point = best_points([r for r in grid if r["schedule"] == s and r["layer"] == layer]).get(s)
            if point is None:
                continue
            c = Condition(s, layer, point["coef"])
            r = _condition_result(model, test, c, vectors, config, out / "test" / f"{c.label()}.json", remote, weights)
            per_layer.append({**r["summary"], "selected_by": "dev accuracy within the layer",
                              "dev_accuracy": point["accuracy"],
                              "gap_recovered_ci": gap_recovery(direct["correct"], cot["correct"], r["correct"],
                                                               seed=config.seed),
                              **chain_agreement(r["texts"], cot["texts"])})
    # control: a random direction of the same norm per layer, at each schedule's selected grid point
    random_table = random_like(vectors, seed=config.control_seed)
    controls = []
    for s in config.schedules:
        if s not in best:
            continue
        c = Condition(s, best[s]["layer"], best[s]["coef"])
        r = _condition_result(model, test, c, random_table, config, out / "test" / f"random-{c.label()}.json",
                              remote, weights)
        d = paired_bootstrap_diff(r["correct"], direct["correct"], seed=config.seed)
        controls.append({**r["summary"], "name": f"random-{s}", "control": "random direction, same norm",
                         "minus_direct": d.value, "minus_direct_ci_low": d.low, "minus_direct_ci_high": d.high,
                         "minus_steered": float(np.mean(r["correct"]) - np.mean(results[s]["correct"])),
                         "gap_recovered_ci": gap_recovery(direct["correct"], cot["correct"], r["correct"],
                                                          seed=config.seed)})
    # the vector on the prompt without any instruction (the question alone)
    no_instruction = []
    plain = _condition_result(model, test, Condition("direct"), None, config, out / "test" / "none.json", remote,
                              weights, prompt_mode="none")
    no_instruction.append({**plain["summary"], "name": "none"})
    for s in config.schedules:
        if s not in best:
            continue
        c = Condition(s, best[s]["layer"], best[s]["coef"])
        r = _condition_result(model, test, c, vectors, config, out / "test" / f"none-{c.label()}.json", remote,
                              weights, prompt_mode="none")
        d = paired_bootstrap_diff(r["correct"], plain["correct"], seed=config.seed)
        no_instruction.append({**r["summary"], "name": f"none+{s}", "minus_none": d.value,
                               "minus_none_ci_low": d.low, "minus_none_ci_high": d.high,
                               **{f"chain_{k}": v for k, v in chain_agreement(r["texts"], cot["texts"]).items()}})
    analysis = analyse(store, out, out / "grid.jsonl", rows + chain_points + controls + no_instruction, best,
                       dev_ref)
    examples = {name: r["texts"][:3] for name, r in results.items()}
    result = {"vectors": str(store), "conditions": rows, "comparisons": comparisons, "best": best,
              "chain_points": chain_points, "per_layer": per_layer, "controls": controls, "no_instruction": no_instruction,
              "cot_minus_direct": {"value": gap_ci.value, "ci_low": gap_ci.low, "ci_high": gap_ci.high},
              "dev_reference": dev_ref, "layers": list(layers), "coefs": list(config.coefs),
              "extraction": extraction, "vector_table": analysis["vectors"], "headline": [],
              "examples": examples, "figures": analysis["figures"], "config": asdict(config)}
    write_study(out, cot_vectors, result, model=model)  # the headline and the comparison with the source, from the results
    return result


def saved_config(result: dict) -> Config:
    """The `Config` a study ran with, from its results (fields it predates keep their defaults)."""
    names = {f.name for f in fields(Config)}
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in result.get("config", {}).items()
                     if k in names})


def write_study_report(out, result: dict, figures) -> Path:
    """`OUT/report.md` (and `results.json`) from a finished study's results, its headline as it was run."""
    from analyses import cot_vectors
    return write_study(out, cot_vectors, result, figures=figures, headline=False)


def report_only(out) -> dict:
    """Re-render `OUT/report.md` from `OUT/results.json` without loading the model: the "Compared with
    the source" rows are recomputed from the results (`compare_with_source`) and written back to
    `results.json`; the figures are the ones already in `OUT/figures/` (they need the vector store and
    the grid, which a committed study does not carry). The configuration is the one the study ran with.
    """
    out = Path(out)
    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"--report-only needs {path}: run the study first")
    result = json.loads(path.read_text())
    order = ("vectors", "grid_heatmaps", "conditions")
    figures = sorted((out / "figures").glob("*.png"),
                     key=lambda f: (order.index(f.stem) if f.stem in order else len(order), f.stem))
    write_study_report(out, result, figures)
    return result


if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "out/cot_vectors", __doc__))
