"""What a CODI-GPT-2 run on NDIF as base model + LoRA interventions sends: requests and bytes per example.

    python bench/bench_ndif_cost.py [--device cpu] [--batch-sizes 4,16] [--json PATH]

Builds a checkpoint at the size of zen-E/CODI-gpt2 (random weights, `bench_real_size.build_checkpoint`:
GPT-2 12×768, vocabulary 50257+3, LoRA r=128 on c_attn/c_proj/c_fc, prj 768→768 + LayerNorm, bf16
base), loads it with `lora_mode="interventions"` and runs GSM8K test questions through the latent
loop with `remote="local"`, which serialises every request exactly as NDIF would receive it.
Every `RequestModel.serialize` is counted and sized (raw and zstd level 6, as the NDIF client sends
it). A request's size does not depend on the number of LM calls (tested), so bytes per example are
`(fixed + per-example · B) / B` for batch size B; the fit is extrapolated to the 1,319 GSM8K test
questions. Also checks that the interventions run answers like the merged model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_real_size import build_checkpoint  # noqa: E402

GSM8K_TEST = 1319


def gsm8k_questions(n: int) -> list[str]:
    """The first `n` GSM8K test questions (the copy shipped with the package)."""
    from nnsight_codi.data.gsm8k import read_shipped

    return [r["question"] for r in read_shipped("test")[:n]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="4,16")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--json", default=str(HERE / "results" / "bench_ndif_cost.json"))
    parser.add_argument("--quick", action="store_true", help="batches of 2 and 4 (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.batch_sizes = "2,4"

    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import run_loop
    from nnsight_codi.tracing.remote import count_requests

    root = Path(tempfile.mkdtemp())
    built = build_checkpoint(root)
    start = time.perf_counter()
    codi = load_model(built["path"], base=built["base_dir"], device=args.device, lora_mode="interventions")
    res: dict = {"load_seconds": round(time.perf_counter() - start, 2), "device": args.device,
                 "checkpoint_bytes": built["bytes"]}
    with count_requests(with_zstd=True) as log:
        executor = codi.executor("local")  # the weight check, as a serialised request
    res["weight_check"] = {"requests": log.requests, "raw_bytes": log.raw_bytes[0], "zstd_bytes": log.compressed_bytes[0]}
    adapter = executor.adapter
    res["adapter_bytes"] = {"float32": adapter.nbytes, "bfloat16": adapter.cast(torch.bfloat16).nbytes}
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    questions = gsm8k_questions(max(sizes))
    res["prompt_tokens_mean"] = round(sum(len(codi.prompt_ids(q)) for q in questions) / len(questions), 1)
    runs = []
    for batch in sizes:
        prompts = codi.encode(questions[:batch])
        with count_requests(with_zstd=True) as log:
            start = time.perf_counter()
            tokens, _ = run_loop(codi, prompts, max_new_tokens=args.max_new_tokens, remote="local")
            seconds = time.perf_counter() - start
        runs.append({"batch_size": batch, "requests": log.requests, "raw_bytes": sum(log.raw_bytes),
                     "zstd_bytes": sum(log.compressed_bytes), "seconds_local": round(seconds, 2),
                     "prompt_width": int(prompts.input_ids.shape[1])})
    res["runs"] = runs
    a, b = runs[0], runs[-1]
    for kind in ("raw_bytes", "zstd_bytes"):
        per_example = (b[kind] - a[kind]) / (b["batch_size"] - a["batch_size"]) if b is not a else 0.0
        fixed = a[kind] - per_example * a["batch_size"]
        res[f"fit_{kind}"] = {"per_session": round(fixed), "per_example": round(per_example, 1)}
    fit = res["fit_zstd_bytes"]
    res["gsm8k_test"] = [
        {"batch_size": bsz, "requests": math.ceil(GSM8K_TEST / bsz),
         "mb_sent": round((math.ceil(GSM8K_TEST / bsz) * fit["per_session"] + GSM8K_TEST * fit["per_example"]) / 1e6),
         "kb_per_example": round((fit["per_session"] / bsz + fit["per_example"]) / 1e3, 1)}
        for bsz in (32, 64, 128, 256)]

    merged = load_model(built["path"], base=built["base_dir"], device=args.device)
    probe = questions[:4]
    same = sum(x == y for x, y in zip(codi.answer(probe, max_new_tokens=8), merged.answer(probe, max_new_tokens=8)))
    res["answers_equal_merged_fp32"] = f"{same}/{len(probe)}"
    print(json.dumps(res, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
