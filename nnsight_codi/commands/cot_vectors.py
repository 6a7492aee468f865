r"""`nnsight-codi cot-vectors extract|sweep|eval`: CoT steering vectors for instruct LMs.

Examples::

    nnsight-codi cot-vectors extract --model tiny-instruct --dataset synthetic --limit 64 --out out/cot/vectors.zarr
    nnsight-codi cot-vectors sweep --model tiny-instruct --vectors out/cot/vectors.zarr --layers 1,2,3,4 \
        --coefs 1,2,4,8 --out out/cot/grid.jsonl
    nnsight-codi cot-vectors eval --model tiny-instruct --vectors out/cot/vectors.zarr \
        --condition continuous:2:4 --dataset synthetic --limit 100 --json
    nnsight-codi cot-vectors eval --model meta-llama/Llama-3.1-8B-Instruct --remote ndif --condition cot \
        --dataset gsm8k:shipped --limit 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.scoring import extract_gold, extract_prediction
from ..predictions import Prediction, write_predictions
from .common import emit_json, remote_value, synthetic_overrides
from .outdir import check_out

if TYPE_CHECKING:
    from nnsight import TransformersModel


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny-instruct", help="an instruct LM: 'tiny-instruct', a local HF dir or a hub id")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    p.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 (default: float32)")
    p.add_argument("--remote", default=None, help="'local' (serialised like NDIF), 'ndif' or an http(s) NDIF host")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--cot-instruction", default=None, help="instruction appended for the CoT prompt")
    p.add_argument("--direct-instruction", default=None, help="instruction appended for the direct prompt")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _data_args(p: argparse.ArgumentParser, split: str, limit: int | None) -> None:
    p.add_argument("--dataset", default="synthetic",
                   help="'synthetic', 'paper' (the paper's mix; network), 'gsm8k' (Hub when online, else the shipped copy) or a local json/jsonl/parquet")
    p.add_argument("--split", default=split, help=f"train | dev | test for synthetic (default: {split})")
    p.add_argument("--limit", type=int, default=limit, help="use the first N questions")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic split / of sampling (default: 0)")
    group = p.add_argument_group("synthetic difficulty (default: the distribution the model was trained on, "
                                 "instruct.json's synthetic_options)")
    group.add_argument("--min-steps", type=int, default=None, help="fewest operations per problem")
    group.add_argument("--max-steps", type=int, default=None, help="most operations per problem")
    group.add_argument("--value-max", type=int, default=None, help="largest operand or intermediate value")
    group.add_argument("--ops", default=None, help="operations after the opening, a subset of '+-*/'")


def _questions(args: argparse.Namespace, model: TransformersModel, loaded=None):
    """The question set of `--dataset` (`loaded`: what `_check_data` already read): synthetic
    problems from the model's training distribution (`instruct.json`, as CODI commands follow
    `codi.json`) with the difficulty flags on top.
    """
    from ..cot.questions import load_questions
    from ..data.eval_datasets import synthetic_options

    if args.dataset != "synthetic":
        return loaded if loaded is not None else load_questions(args.dataset, split=args.split, limit=args.limit,
                                                                seed=args.seed)
    return load_questions("synthetic", split=args.split, limit=args.limit, seed=args.seed,
                          **synthetic_options(model, synthetic_overrides(args)))


def _check_data(args: argparse.Namespace):
    """What fails without the model: difficulty flags off synthetic data, a bad dataset path.
    Returns a non-synthetic question set (read once, before the model loads), else None.
    """
    from ..cot.questions import load_questions
    from ..data.eval_datasets import synthetic_options

    if args.dataset != "synthetic":
        if synthetic_overrides(args):
            raise ValueError("--min-steps/--max-steps/--value-max/--ops apply to --dataset synthetic only")
        return load_questions(args.dataset, split=args.split, limit=args.limit, seed=args.seed)
    synthetic_options(None, synthetic_overrides(args))
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"limit must be >= 1, got {args.limit}")
    return None


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `cot-vectors` subcommand with its `extract`, `sweep` and `eval` actions; return its parser."""
    p = subparsers.add_parser("cot-vectors", help="chain-of-thought steering vectors for instruct LMs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)

    e = sub.add_parser("extract", help="extract CoT vectors into a store (resumable)")
    _model_args(e)
    _data_args(e, "train", 64)
    e.add_argument("--out", required=True,
                   help="the vector store to write (zarr directory); one there of the same questions and settings "
                        "is resumed, of others refused, and any other artifact is refused")
    e.add_argument("--greedy", action="store_true", help="greedy continuations (default: sampled with --sample-seed)")
    e.add_argument("--sample-seed", type=int, default=0)
    e.add_argument("--positions", choices=["generated", "all", "last_prompt"], default="generated",
                   help="positions averaged: the generated ones (default), all, or the last prompt token")
    e.set_defaults(func=run_extract)

    s = sub.add_parser("sweep", help="grid over (schedule, layer, coefficient) on a dev split (resumable)")
    _model_args(s)
    _data_args(s, "dev", 32)
    s.add_argument("--vectors", required=True, help="a vector store written by `cot-vectors extract`")
    s.add_argument("--schedules", default="single,continuous")
    s.add_argument("--layers", required=True, help="comma-separated layers (0 = embeddings, l = block l-1's output)")
    s.add_argument("--coefs", required=True, help="comma-separated coefficients")
    s.add_argument("--out", required=True,
                   help="grid file (jsonl): an existing grid of the same model, vectors and questions is resumed, "
                        "of others refused; a directory or another artifact is refused")
    s.set_defaults(func=run_sweep)

    v = sub.add_parser("eval", help="accuracy and reasoning rate under one condition")
    _model_args(v)
    _data_args(v, "test", 100)
    v.add_argument("--vectors", default=None, help="vector store (needed by single/continuous)")
    v.add_argument("--condition", default="direct", help="direct | cot | single:LAYER:COEF | continuous:LAYER:COEF")
    v.add_argument("--sample", action="store_true", help="sample (seeded by --seed) instead of greedy decoding")
    v.add_argument("--out", default=None,
                   help="write predictions.jsonl and summary.json here (predictions there are replaced; any other "
                        "artifact is refused)")
    v.set_defaults(func=run_eval)
    return p


def _instructions(args):
    from ..cot.prompts import Instructions

    base = Instructions()
    return Instructions(args.cot_instruction or base.cot, args.direct_instruction or base.direct)


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise ValueError(f"--{what} must be comma-separated integers, got {text!r}") from err


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise ValueError(f"--{what} must be comma-separated numbers, got {text!r}") from err


def _vectors(path: str | None):
    from ..cot.vector_estimation import load_vectors

    if path is None:
        return None
    if not Path(path).exists():
        raise FileNotFoundError(f"vector store {path} not found")
    return load_vectors(path)


def run_extract(args: argparse.Namespace) -> int:
    """Run `nnsight-codi cot-vectors extract` from parsed arguments; return the exit code."""
    from ..cot.vector_estimation import ExtractConfig, extract_vectors
    from ..loading import load_instruct_model
    from ..tracing.remote import check_remote

    check_out(args.out, "cot-vectors extract")
    ins = _instructions(args)
    remote = check_remote(remote_value(args.remote))
    cfg = ExtractConfig(model=args.model, dataset=args.dataset, split=args.split, seed=args.seed, limit=args.limit,
                        cot_instruction=ins.cot, direct_instruction=ins.direct, greedy=args.greedy,
                        sample_seed=args.sample_seed, max_new_tokens=args.max_new_tokens, positions=args.positions,
                        batch_size=args.batch_size, device=args.device, dtype=args.dtype, remote=remote)
    loaded = _check_data(args)
    model = load_instruct_model(args.model, args.device, args.dtype, remote)
    questions = _questions(args, model, loaded)
    if args.dataset == "synthetic":  # the distribution goes into the store's fingerprint (a resume must match)
        from ..data.eval_datasets import synthetic_options

        cfg.synthetic = {k: list(v) if isinstance(v, tuple) else v
                         for k, v in synthetic_options(model, synthetic_overrides(args)).items()}
    summary = extract_vectors(args.out, cfg, model=model, questions=questions, progress=not args.json)
    if args.json:
        emit_json(summary)
    else:
        print(f"CoT vectors of {summary['examples']} questions ({summary['written_now']} new) in {args.out}; "
              f"|v_l| by layer: {summary['vector_norms']}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Run `nnsight-codi cot-vectors sweep` from parsed arguments; return the exit code."""
    from ..cot.grid import best_points, run_grid
    from ..loading import load_instruct_model
    from ..tracing.remote import check_remote

    check_out(args.out, "cot-vectors sweep")
    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    layers, coefs = _ints(args.layers, "layers"), _floats(args.coefs, "coefs")
    from ..cot.cot_steering import check_schedule

    for s in schedules:
        check_schedule(s)
    remote = check_remote(remote_value(args.remote))
    vectors = _vectors(args.vectors)
    assert vectors is not None  # --vectors is required
    top = len(vectors) - 1  # the store's residual layers 0..L
    bad = [layer for layer in layers if not 0 <= layer <= top]
    if bad or not layers:
        raise ValueError(f"--layers {args.layers}: residual layers 0..{top} (0 = the embeddings, l = block l-1's "
                         f"output){f'; {bad} out of range' if bad else ''}")
    loaded = _check_data(args)
    model = load_instruct_model(args.model, args.device, args.dtype, remote)
    dev = _questions(args, model, loaded)
    fingerprint = {"model": args.model, "vectors": str(Path(args.vectors).resolve()), "dataset": args.dataset,
                   "split": args.split, "limit": args.limit, "seed": args.seed, "max_new_tokens": args.max_new_tokens,
                   "instructions": [_instructions(args).cot, _instructions(args).direct]}
    if args.dataset == "synthetic":
        from ..data.eval_datasets import synthetic_options

        fingerprint["synthetic"] = synthetic_options(model, synthetic_overrides(args))
    start = time.perf_counter()
    rows = run_grid(model, dev, vectors, args.out, schedules, layers, coefs, fingerprint=fingerprint,
                    progress=not args.json, instructions=_instructions(args), max_new_tokens=args.max_new_tokens,
                    batch_size=args.batch_size, remote=remote)
    best = {k: {kk: v[kk] for kk in ("layer", "coef", "accuracy", "reasoning_rate", "n")}
            for k, v in best_points(rows).items()}
    out = {"grid": str(args.out), "cells": len(rows), "best": best, "seconds": round(time.perf_counter() - start, 3),
           "rows": [{k: r[k] for k in ("schedule", "layer", "coef", "accuracy", "reasoning_rate", "n")} for r in rows]}
    if args.json:
        emit_json(out)
    else:
        for name, b in best.items():
            print(f"best {name}: layer {b['layer']} coef {b['coef']:g}: dev accuracy {b['accuracy']:.2%}, "
                  f"outputs that write a chain {b['reasoning_rate']:.2%} (n={b['n']})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Run `nnsight-codi cot-vectors eval` from parsed arguments; return the exit code."""
    from ..cot.cot_accuracy import evaluate_condition
    from ..cot.cot_steering import parse_condition
    from ..loading import load_instruct_model
    from ..tracing.remote import check_remote

    check_out(args.out, "cot-vectors eval")
    condition = parse_condition(args.condition)
    if condition.schedule is not None and args.vectors is None:
        raise ValueError(f"condition {args.condition} needs --vectors STORE")
    remote = check_remote(remote_value(args.remote))
    vectors = _vectors(args.vectors)
    loaded = _check_data(args)
    model = load_instruct_model(args.model, args.device, args.dtype, remote)
    data = _questions(args, model, loaded)
    start = time.perf_counter()
    res = evaluate_condition(model, data, condition, vectors, instructions=_instructions(args),
                             max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, greedy=not args.sample,
                             seed=args.seed, remote=remote, progress=not args.json)
    summary = res.summary() | {"condition": condition.label(), "seconds": round(time.perf_counter() - start, 3),
                               "model": args.model, "dataset": args.dataset}
    if args.out:
        out = Path(args.out)
        rows = zip(res.ids, data["question"], data["answer"], res.texts, res.correct, res.reasoning)
        write_predictions(out, (Prediction(str(i), q, t, extract_prediction(t), extract_gold(a), bool(c),
                                           writes_chain=bool(r)) for i, q, a, t, c, r in rows))
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        summary["out"] = str(out)
    if args.json:
        emit_json(summary)
    else:
        print(f"{condition.label()}: accuracy {res.accuracy:.2%} (95% CI [{summary['ci_low']:.2%}, "
              f"{summary['ci_high']:.2%}], n={res.n}); outputs that write a chain: {res.reasoning_rate:.2%}")
    return 0
