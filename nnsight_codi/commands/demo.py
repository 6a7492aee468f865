"""`nnsight-codi demo`: the shipped tiny CODI end to end — accuracy with and without latents,
worked examples with each step's logit-lens read-out, and an activation store.

    nnsight-codi demo                   # writes out/demo/
    nnsight-codi demo --limit 100 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import emit_json


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="run the tiny CODI demo (eval, logit lens, capture)")
    p.add_argument("--model", default="tiny")
    p.add_argument("--limit", type=int, default=300, help="synthetic test problems (default: 300)")
    p.add_argument("--seed", type=int, default=1, help="seed of the test problems (never used in training)")
    p.add_argument("--examples", type=int, default=3, help="worked examples to print")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from ..capture import CaptureConfig, run_capture
    from ..data.sources import load_eval_dataset, synthetic_options
    from ..evaluation import direct_answer_budget, evaluate
    from ..lens import logit_lens, top_tokens
    from ..tracing.capture import Capture
    from ..tracing.hooks import run_loop
    from .common import load_codi_model

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

    k, last = codi.num_latents, codi.num_layers
    shown = dataset.select(range(min(args.examples, len(dataset))))
    hook = Capture(["hidden"], [last], k)
    tokens, records = run_loop(codi, codi.encode(list(shown["question"])), [hook], max_new_tokens=32)
    answers = codi.decode(tokens)
    worked = []
    for row in range(len(shown)):
        lens = []
        for name, step, tensor in records:
            ids, probs = top_tokens(logit_lens(codi, tensor[row]), k=1)
            lens.append({"step": codi.step_names()[step], "token": codi.tokenizer.decode([int(ids[0])]).strip(),
                         "prob": round(float(probs[0]), 3)})
        worked.append({"question": shown["question"][row], "cot": shown["cot"][row] if "cot" in shown.column_names
                       else None, "gold": shown["answer"][row], "answer": answers[row], "logit_lens": lens})
    (out / "worked_examples.json").write_text(json.dumps(worked, indent=2) + "\n")

    store = out / "capture.zarr"
    capture = run_capture(store, CaptureConfig(model=args.model, limit=min(64, args.limit), seed=args.seed,
                                               max_new_tokens=32), codi=codi, progress=not quiet)
    summary = {"model": args.model, "num_latents": k, "n": with_latents.n,
               "accuracy": with_latents.accuracy, "accuracy_k0": without.accuracy,
               "accuracy_k0_free": without_free.accuracy, "k0_free_writes_cot": writes_cot,
               "out": str(out), "store": str(store), "store_examples": capture["examples"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        emit_json(summary | {"worked_examples": worked})
        return 0
    print(f"\naccuracy with {k} latents: {with_latents.accuracy:.1%}   with 0 latents: {without.accuracy:.1%}"
          f"   ({with_latents.n} held-out synthetic problems, seed {args.seed})")
    print(f"with 0 latents and room to write more: {without_free.accuracy:.1%} "
          f"({writes_cot}/{without_free.n} answers start an explicit chain of thought '<<' instead)\n")
    for ex in worked:
        print(f"Q: {ex['question']}")
        if ex["cot"]:
            print(f"   chain of thought (not shown to the model): {ex['cot']}")
        print("   logit lens, last layer:  " + "  ".join(f"{e['step']}→{e['token']!r}" for e in ex["logit_lens"]))
        print(f"   answer: {ex['answer']!r}   gold: {ex['gold']}\n")
    print(f"outputs in {out}/: eval/predictions.jsonl, eval_k0/, eval_k0_free/, worked_examples.json, summary.json, "
          f"capture.zarr (open with nnsight_codi.store.open_store or `nnsight-codi info {store}`)")
    return 0
