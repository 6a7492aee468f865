"""`nnsight-codi demo`: the whole framework on the shipped tiny models, in a few minutes on a CPU.

The tiny CODI end to end (accuracy with and without latents, an activation store), then every study of
`nnsight_codi.studies.STUDIES` at demo size, each writing its report, figures and results.json
under `out/demo/<study>/`, and one page `out/demo/index.html` that links them all. The worked
examples (each step's logit-lens read-out at its most informative layer) are the lens study's own
(`worked_examples` of its results.json, at the layers its `best_layer` rule picks), so they are
shown when the lens study ran.

    nnsight-codi demo                                 # writes out/demo/ (index.html)
    nnsight-codi demo --studies lens,attention --json
    nnsight-codi demo --studies none --limit 100      # the tiny CODI only
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..demo_index import write_index
from ..stats import bootstrap_ci
from ..studies import run_study, select_studies
from .common import emit_json
from .outdir import check_out

if TYPE_CHECKING:
    from ..studies import StudyOutcome


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `demo` subcommand and its flags; return its parser."""
    p = subparsers.add_parser("demo", help="run the tiny CODI demo (eval, logit lens, capture)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--limit", type=int, default=300, help="synthetic test problems (default: 300)")
    p.add_argument("--seed", type=int, default=1, help="seed of the test problems (never used in training)")
    p.add_argument("--examples", type=int, default=3,
                   help="worked examples to print, from the lens study's results (which hold 3; default: 3)")
    p.add_argument("--studies", default="all",
                   help="studies to run after the core demo: all, none, or a comma list of "
                        "lens,steering,patching,attention,cot_vectors and any registered study (default: all)")
    p.add_argument("--out", default="out/demo",
                   help="output directory (default: out/demo); a demo there is run again (evaluations and studies "
                        "replaced, the capture store resumed); any other artifact is refused")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi demo` from parsed arguments; return the exit code (1 if a study failed)."""
    from ..activation_capture import CaptureConfig, run_capture
    from ..data.eval_datasets import load_eval_dataset, synthetic_options
    from ..evaluation import direct_answer_budget, evaluate
    from ..loading import load_codi_model
    studies = select_studies(args.studies)  # a bad name fails before any work
    if args.examples < 0:
        raise ValueError(f"--examples must be >= 0, got {args.examples}")
    check_out(args.out, "demo")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    codi = load_codi_model(args.model)
    dataset = load_eval_dataset("synthetic", limit=args.limit, seed=args.seed, **synthetic_options(codi))
    quiet = args.json
    with_latents = evaluate(codi, dataset, progress=not quiet, model_name=args.model, dataset_name="synthetic")
    # Without latents: once answering directly (decoding bounded to the answer's length), once
    # free to write more (the model may fall back to writing its chain of thought out).
    without = evaluate(codi, dataset, num_latents=0, max_new_tokens=direct_answer_budget(codi), progress=not quiet,
                       model_name=args.model, dataset_name="synthetic")
    without_free = evaluate(codi, dataset, num_latents=0, progress=not quiet, model_name=args.model,
                            dataset_name="synthetic")
    with_latents.write(out / "eval")
    without.write(out / "eval_k0")
    without_free.write(out / "eval_k0_free")
    writes_cot = sum("<<" in p.prediction_text for p in without_free.predictions)

    store = out / "capture.zarr"
    capture = run_capture(store, CaptureConfig(model=args.model, limit=min(64, args.limit), seed=args.seed,
                                               max_new_tokens=32), codi=codi, progress=not quiet)
    cis = {key: _accuracy_ci(result) for key, result in
           (("accuracy", with_latents), ("accuracy_k0", without), ("accuracy_k0_free", without_free))}
    summary = {"model": args.model, "num_latents": codi.num_latents, "n": with_latents.n,
               "accuracy": with_latents.accuracy, "accuracy_k0": without.accuracy,
               "accuracy_k0_free": without_free.accuracy, "accuracy_ci": cis, "k0_free_writes_cot": writes_cot,
               "out": str(out), "store": str(store), "store_examples": capture["examples"]}

    # The studies, each at demo size; a CODI model other than the default is handed to them.
    overrides = {} if args.model == "tiny" else {"model": args.model}
    outcomes = []
    for i, study in enumerate(studies, 1):
        if not quiet:
            expected = f", about {study.expected_seconds:.0f} s on 2 CPU cores" if study.expected_seconds else ""
            print(f"\n== study {i}/{len(studies)}: {study.name} ({study.title}{expected})", file=sys.stderr)
        outcome = run_study(study, out / study.name, progress=not quiet,
                            overrides=overrides if study.name != "cot_vectors" else None)
        outcomes.append(outcome)
        if not quiet:
            print(f"   {outcome.status}" + (f": {outcome.error}" if outcome.error else f" in {outcome.seconds:.0f} s"),
                  file=sys.stderr)

    worked = lens_worked_examples(outcomes, args.examples)
    (out / "worked_examples.json").write_text(json.dumps(worked, indent=2) + "\n")
    summary["studies"] = {o.study.name: {"status": o.status, "seconds": round(o.seconds, 1), "headline": o.headline,
                                         "error": o.error, "out": str(o.out)} for o in outcomes}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    index = write_index(out, summary, worked, outcomes)
    summary["index"] = str(index)
    failed = [o.study.name for o in outcomes if o.status == "failed"]
    if args.json:
        emit_json(summary | {"worked_examples": worked})
        return 1 if failed else 0
    k = codi.num_latents
    print(f"\naccuracy with {k} latents: {with_latents.accuracy:.1%} {_ci_text(cis['accuracy'])}   with 0 latents: "
          f"{without.accuracy:.1%} {_ci_text(cis['accuracy_k0'])}   ({with_latents.n} held-out synthetic problems, "
          f"seed {args.seed}; 95% bootstrap CIs)")
    print(f"accuracy with 0 latents and room to write more: {without_free.accuracy:.1%} "
          f"{_ci_text(cis['accuracy_k0_free'])} "
          f"({writes_cot}/{without_free.n} = {writes_cot / max(without_free.n, 1):.1%} of answers write an explicit "
          "chain of thought '<<' instead)\n")
    if worked:
        print("worked examples of the lens study (its problems; top-3 logit-lens read-outs at each step's most "
              "informative layer, as the study found it):\n")
    elif args.examples:
        print("worked examples come from the lens study: run it too (--studies lens) to see them\n")
    for ex in worked:
        print(f"Q: {ex['question']}")
        if ex.get("intermediates"):
            print(f"   intermediate results (not shown to the model): {', '.join(f'{v:g}' for v in ex['intermediates'])}")
        for e in ex["steps"]:
            tops = "  ".join(f"{t!r} {p:.2f}" for t, p in zip(e["tokens"][:3], e["probs"][:3]))
            print(f"     {e['step_name']:>8} @ layer {e['layer']}: {tops}")
        verdict = "" if ex.get("correct") is None else ("   answered correctly" if ex["correct"] else "   answered wrongly")
        print(f"   gold: {ex['answer']:g}{verdict}\n")
    for o in outcomes:  # one line per study: its summary line (else its first headline)
        print(f"[{o.status}] {o.study.name}: " + (o.error or o.summary or "done"))
    print(f"\nopen {index} — every study's report, figures and the latent dashboard")
    return 1 if failed else 0


def _accuracy_ci(result) -> list[float]:
    """95% percentile-bootstrap CI `[low, high]` of an evaluation's accuracy (over its problems)."""
    interval = bootstrap_ci([float(p.correct) for p in result.predictions])
    return [interval.low, interval.high]


def _ci_text(ci: list[float]) -> str:
    """`[93.0, 98.7]`: a CI in percent, as the reports write it.

    >>> _ci_text([0.93, 0.987])
    '[93.0, 98.7]'
    """
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def lens_worked_examples(outcomes: Sequence[StudyOutcome], count: int) -> list[dict[str, Any]]:
    """The first `count` worked examples of the lens study's `results.json` when it ran in this demo and
    succeeded (each step's top read-outs at the layer its `best_layer` rule picks), else none.
    """
    lens = next((o for o in outcomes if o.study.name == "lens" and o.status == "ok"), None)
    results = lens.out / "results.json" if lens is not None else None
    if results is None or not results.is_file():
        return []
    return list(json.loads(results.read_text()).get("worked_examples", []))[:count]
