"""`nnsight-codi lm-eval`: lm-eval's evaluator with the `nnsight-codi` model (any model this project loads).

Examples::

    nnsight-codi lm-eval --model-args model=tiny --tasks nnsight_codi_synthetic --limit 50
    nnsight-codi lm-eval --model-args model=out/codi-gpt2,batch_size=64,device=cuda \\
        --tasks nnsight_codi_gsm8k_local --data-file nnsight_codi_gsm8k_local=../shared/data/gsm8k/test.jsonl
    nnsight-codi lm-eval --model-args model=tiny-instruct,prompt_mode=direct,condition=continuous:2:4,vectors=V.zarr \\
        --tasks nnsight_codi_synthetic
    nnsight-codi lm-eval --model-args model=meta-llama/Llama-3.1-8B-Instruct,remote=ndif --tasks gsm8k --limit 20

Model args: model, device, dtype, batch_size, remote (local|ndif|URL), ndif_model (CODI on NDIF),
vectors, condition (direct|single:L:C|continuous:L:C), prompt_mode (raw|cot|direct), num_latents,
masking, max_gen_toks, seed. Local tasks: nnsight_codi_synthetic, nnsight_codi_gsm8k_local; the
paper's tasks by lm-eval name (gsm8k, mmlu_generative, arc_challenge_chat, agieval) need network.
"""

from __future__ import annotations

import argparse
import time

from .common import emit_json


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("lm-eval", help="run lm-eval's evaluator with the nnsight-codi model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-args", default="model=tiny", help="comma-separated key=value (default: model=tiny)")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    p.add_argument("--data-file", action="append", default=[], metavar="TASK=PATH",
                   help="data file of a local task (repeatable)")
    p.add_argument("--include-path", default=None, help="extra directory of lm-eval task YAMLs")
    p.add_argument("--limit", type=float, default=None, help="examples per task (or a fraction < 1)")
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--apply-chat-template", action="store_true", help="lm-eval's chat templating of contexts")
    p.add_argument("--output-path", default=None, help="write results.json (and samples) here")
    p.add_argument("--log-samples", action="store_true", help="keep per-sample outputs in --output-path")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)
    return p


def parse_data_files(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--data-file must be TASK=PATH, got {item!r}")
        task, path = item.split("=", 1)
        out[task.strip()] = path.strip()
    return out


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lm_eval import simple_evaluate
    from lm_eval.utils import simple_parse_args_string

    import nnsight_codi.harness  # noqa: F401  (registers the model)
    from nnsight_codi.harness.tasks import LOCAL_TASKS, check_local_data, task_manager

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ValueError("--tasks is empty")
    data_files = parse_data_files(args.data_file)
    check_local_data(tasks, data_files)
    model_args = simple_parse_args_string(args.model_args)
    if "model" not in model_args:
        raise ValueError("--model-args needs model=… ('tiny', a converted CODI dir, a HF LM dir or hub id)")
    model_args["progress"] = not args.json
    manager = task_manager(data_files, args.include_path, include_defaults=not set(tasks) <= set(LOCAL_TASKS))
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown lm-eval task(s) {unknown} (local tasks: {sorted(LOCAL_TASKS)})")
    start = time.perf_counter()
    res = simple_evaluate(model="nnsight-codi", model_args=model_args, tasks=tasks, limit=args.limit,
                          num_fewshot=args.num_fewshot, task_manager=manager, log_samples=args.log_samples,
                          apply_chat_template=args.apply_chat_template, bootstrap_iters=1000)
    summary = {"results": res["results"], "model_args": args.model_args, "tasks": tasks,
               "n": {t: v.get("effective", v.get("original")) for t, v in res.get("n-samples", {}).items()},
               "seconds": round(time.perf_counter() - start, 3)}
    if args.output_path:
        out = Path(args.output_path)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        if args.log_samples:
            with open(out / "samples.jsonl", "w") as handle:
                for task, rows in res.get("samples", {}).items():
                    for row in rows:
                        handle.write(json.dumps({"task": task, "doc_id": row["doc_id"], "resps": row["resps"],
                                                 "metrics": {m: row.get(m) for m in row["metrics"]}},
                                                default=str) + "\n")
        summary["output_path"] = str(out)
    if args.json:
        emit_json(summary)
    else:
        from lm_eval.utils import make_table

        print(make_table(res))
    return 0
