"""Capture → zarr against in-memory capture, steady state, side by side; peak RSS vs dataset size.

    python bench/bench_capture.py [--sizes tiny,gpt2] [--batches 6] [--repeats 3] [--quick] [--device cpu|cuda]

For each model (the shipped tiny CODI at batch 64, a CODI-GPT-2-sized model with random weights
at batch 8) and `--batches` batches of distinct synthetic questions, the wall time of the batch loop
`run_capture` runs (hidden states of all layers + latent inputs, answers, prompt ids), timed
round-robin, `--repeats` rounds, per-round ratios to `in-memory`:

- `in-memory`          each batch computed (encode, `run_loop` + `Capture`, `assemble`, scoring), nothing written;
- `→ zarr background`  the same, each batch handed to `BackgroundStoreWriter` (what `run_capture` uses);
                       the timer stops after the last batch is on disk (flush);
- `→ zarr synchronous` the same with the synchronous `StoreWriter` (before #13).

The store is created before the timer starts (a fixed cost, reported as `store creation`), so the
ratios are the steady-state cost of writing. `run_capture` end to end (dataset generation and store
creation included) is timed once per round too. Peak RSS of whole `run_capture` runs of the tiny
model in fresh processes against the number of examples checks memory stays flat.
Writes bench/results/bench_capture.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build, environment  # noqa: E402

BATCH = {"tiny": 64, "gpt2": 8}


def bench_model(size: str, device: str, batches: int, repeats: int, max_new_tokens: int) -> dict:
    from nnsight_codi.activation_capture import CaptureConfig, _capture_batch, _target, run_capture
    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
    from nnsight_codi.data.scoring import extract_gold
    from nnsight_codi.store import BackgroundStoreWriter, StoreWriter
    from nnsight_codi.tracing.capture_hook import Capture

    codi = build(size, device)
    batch = BATCH[size]
    n = batch * batches
    options = synthetic_options(codi, None)
    dataset = load_eval_dataset("synthetic", limit=n, seed=3, **options)
    questions = list(dataset["question"])
    golds = [extract_gold(a) for a in dataset["answer"]]
    config = CaptureConfig(model=size, limit=n, seed=3, batch_size=batch, max_new_tokens=max_new_tokens,
                           variables=("hidden", "latent_input", "answer_pred", "answer_gold", "correct", "prompt_ids"))
    target = _target(codi, config)
    layers = tuple(range(codi.num_layers + 1))
    hook = Capture(["hidden", "latent_input"], layers, codi.num_latents)
    width = max(target.prompt_length(q) for q in questions) + codi.num_latents + 3
    lm_config = codi._module.config

    def new_writer(cls, path):
        return cls(path, variables=list(config.variables), config=config.fingerprint(codi), num_layers=codi.num_layers,
                   coords={"example": [str(i) for i in range(n)], "question": questions,
                           "step_name": target.step_names, "layer": list(layers)},
                   sizes={"dim": int(lm_config.hidden_size), "position": width}, chunk=batch, pad_id=target.pad_id)

    def loop(writer=None) -> float:
        start = time.perf_counter()
        for i in range(0, n, batch):
            idx = list(range(i, min(i + batch, n)))
            data = _capture_batch(target, hook, [questions[j] for j in idx], [golds[j] for j in idx], config, width,
                                  config.variables)
            if writer is not None:
                writer.write(idx, data)
        if writer is not None and hasattr(writer, "flush"):
            writer.flush()
        return time.perf_counter() - start

    root = Path(tempfile.mkdtemp(prefix="bench_capture_"))
    creation: list[float] = []

    def to_zarr(cls) -> float:
        path = root / f"{cls.__name__}-{time.perf_counter_ns()}.zarr"
        t0 = time.perf_counter()
        writer = new_writer(cls, path).open()
        creation.append(time.perf_counter() - t0)
        try:
            return loop(writer)
        finally:
            writer.close()
            shutil.rmtree(path, ignore_errors=True)

    def end_to_end() -> float:
        path = root / f"run-{time.perf_counter_ns()}.zarr"
        t0 = time.perf_counter()
        run_capture(path, config, codi=codi, progress=False)
        seconds = time.perf_counter() - t0
        shutil.rmtree(path, ignore_errors=True)
        return seconds

    variants = {"in-memory": lambda: loop(None),
                "→ zarr background": lambda: to_zarr(BackgroundStoreWriter),
                "→ zarr synchronous": lambda: to_zarr(StoreWriter),
                "run_capture end to end": end_to_end}
    with torch.inference_mode():
        for fn in variants.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(repeats):
            for name, fn in variants.items():
                times[name].append(fn())
    shutil.rmtree(root, ignore_errors=True)
    rows = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times["in-memory"])]
        rows[name] = {"median_s": statistics.median(ts), "runs_s": ts, "ratio": statistics.median(ratios),
                      "ratio_min": min(ratios), "ratio_max": max(ratios)}
    path = root / "bytes.zarr"
    run_capture(path, config, codi=codi, progress=False)
    store_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(root, ignore_errors=True)
    return {"model": size, "layers": codi.num_layers, "dim": codi.hidden_size, "latents": codi.num_latents,
            "batch": batch, "batches": batches, "max_new_tokens": max_new_tokens, "repeats": repeats,
            "variants": rows, "store_creation_s": statistics.median(creation),
            "store_bytes_per_example": store_bytes / n}


PEAK_SCRIPT = """
import resource, sys, tempfile
from pathlib import Path
from nnsight_codi.activation_capture import CaptureConfig, run_capture
n = int(sys.argv[1])
run_capture(Path(tempfile.mkdtemp()) / "s.zarr", CaptureConfig(model="tiny", limit=n, batch_size=32,
            max_new_tokens=16), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(ns: list[int]) -> dict:
    out = {}
    for n in ns:
        res = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(n)], capture_output=True, text=True, check=True)
        out[n] = int(res.stdout.strip().splitlines()[-1]) / 1024  # MiB
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,gpt2")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peak", default="32,128,512", help="dataset sizes for peak RSS ('' to skip)")
    parser.add_argument("--quick", action="store_true", help="tiny only, 4 batches, 2 rounds, peak RSS at 32 and 128")
    parser.add_argument("--json", default=str(RESULTS / "bench_capture.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.repeats, args.peak = "tiny", 4, 2, "32,128"
    # the CODI-GPT-2-sized model takes seconds per batch on a CPU: half the batches there
    results = [bench_model(s, args.device, args.batches if s == "tiny" or args.device != "cpu" else max(2, args.batches // 2),
                           args.repeats, args.max_new_tokens)
               for s in args.sizes.split(",") if s]
    peaks = peak_rss([int(n) for n in args.peak.split(",") if n]) if args.peak else {}
    for r in results:
        print(f"{r['model']} batch {r['batch']} × {r['batches']}:")
        for name, row in r["variants"].items():
            print(f"  {name:24s} {row['median_s']:7.2f} s  ×{row['ratio']:.2f} [{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]")
    if peaks:
        print("peak RSS (MiB):", peaks)
    info = {"env": environment(), "results": results, "peak_rss_mib": peaks,
            "self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    out = Path(args.json)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    return info


if __name__ == "__main__":
    main()
