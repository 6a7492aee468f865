"""Benchmark the activation store: write throughput, bytes per example, peak memory vs N.

Random activations stand in for a capture (random floats compress about as badly as real
residual streams). Sizes: CODI-GPT-2 (12 blocks → 13 layers, 768 dims, K=6 → 8 steps) and a
tiny model. Peak memory is measured with tracemalloc (numpy buffers included) over the whole
write loop, batch generation included; it should stay flat as the number of examples grows.

Usage:
    python bench/bench_store.py [--quick]
Prints a markdown table and writes bench/results/bench_store.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nnsight_codi.store import StoreWriter, step_names
from nnsight_codi.store.summary import dir_bytes

SHAPES = {
    "codi-gpt2": dict(num_latents=6, num_layers=12, dim=768, position=128),
    "tiny": dict(num_latents=3, num_layers=2, dim=64, position=32),
}
VARIABLES = ["hidden", "latent_input", "lens_top_ids", "lens_top_probs", "answer_pred",
             "answer_gold", "correct", "prompt_ids"]


def make_writer(path: Path, shape: dict, n: int, batch: int, dtype: str,
                compression: str) -> StoreWriter:
    k, nl = shape["num_latents"], shape["num_layers"]
    return StoreWriter(
        path, variables=VARIABLES,
        coords=dict(example=[f"ex{i}" for i in range(n)], question=["q"] * n,
                    layer=list(range(nl + 1)), step_name=step_names(k)),
        sizes=dict(dim=shape["dim"], position=shape["position"], k=5),
        config=dict(model_id="bench", num_latents=k), num_layers=nl, dtype=dtype, chunk=batch,
        compression=compression, command="bench")


def make_batch(rng: np.random.Generator, n: int, shape: dict) -> dict[str, np.ndarray]:
    s, nl, d = shape["num_latents"] + 2, shape["num_layers"] + 1, shape["dim"]
    plen = shape["position"] // 2
    return {
        "hidden": rng.standard_normal((n, s, nl, d), dtype=np.float32),
        "latent_input": rng.standard_normal((n, s, d), dtype=np.float32),
        "lens_top_ids": rng.integers(0, 50000, (n, s, nl, 5)),
        "lens_top_probs": rng.random((n, s, nl, 5), dtype=np.float32),
        "answer_pred": rng.integers(0, 100, n).astype(float),
        "answer_gold": rng.integers(0, 100, n).astype(float),
        "correct": rng.random(n) < 0.5,
        "prompt_ids": rng.integers(0, 50000, (n, plen)),
        "prompt_length": np.full(n, plen),
    }


def run_once(root: Path, name: str, n: int, batch: int, dtype: str, compression: str,
             trace: bool) -> dict:
    shape = SHAPES[name]
    path = root / f"{name}-{n}-{dtype}-{compression}-{int(trace)}.zarr"
    rng = np.random.default_rng(0)
    fixed = None if trace else make_batch(rng, batch, shape)
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    raw = 0
    with make_writer(path, shape, n, batch, dtype, compression) as w:
        t_open = time.perf_counter() - t0
        t_write = 0.0
        for idx in w.batches(batch):
            data = make_batch(rng, len(idx), shape) if trace else \
                {k: v[: len(idx)] for k, v in fixed.items()}
            t1 = time.perf_counter()
            w.write(idx, data)
            t_write += time.perf_counter() - t1
            raw += sum(np.asarray(v).nbytes for v in data.values())
    peak = tracemalloc.get_traced_memory()[1] if trace else None
    if trace:
        tracemalloc.stop()
    disk = dir_bytes(path)
    shutil.rmtree(path)
    batch_bytes = sum(v.nbytes for v in make_batch(np.random.default_rng(1), batch,
                                                    shape).values())
    return dict(shape=name, examples=n, batch=batch, dtype=dtype, compression=compression,
                open_s=round(t_open, 3), write_s=round(t_write, 3),
                input_mb=round(raw / 1e6, 2),
                throughput_mb_s=round(raw / 1e6 / t_write, 1) if t_write else None,
                examples_per_s=round(n / t_write, 1) if t_write else None,
                bytes_per_example=int(disk / n),
                peak_mb=round(peak / 1e6, 1) if peak is not None else None,
                batch_mb=round(batch_bytes / 1e6, 2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_store.json"))
    args = ap.parse_args()
    scale = 4 if args.quick else 1
    batch = 32
    root = Path(tempfile.mkdtemp(prefix="bench_store_"))
    rows = []
    try:
        for name, dtype, comp in [("codi-gpt2", "float32", "blosc"),
                                  ("codi-gpt2", "float32", "zstd"),
                                  ("codi-gpt2", "float32", "none"),
                                  ("codi-gpt2", "float16", "blosc"),
                                  ("tiny", "float32", "blosc")]:
            n = (512 if name == "codi-gpt2" else 2048) // scale
            rows.append(run_once(root, name, n, batch, dtype, comp, trace=False))
            print(f"throughput {name} {dtype} {comp}: {rows[-1]['throughput_mb_s']} MB/s",
                  file=sys.stderr)
        for n in (64, 256, 1024) if not args.quick else (32, 128):
            rows.append(run_once(root, "codi-gpt2", n, batch, "float32", "blosc", trace=True))
            print(f"memory n={n}: peak {rows[-1]['peak_mb']} MB", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cols = ["shape", "dtype", "compression", "examples", "batch", "throughput_mb_s",
            "examples_per_s", "bytes_per_example", "peak_mb", "batch_mb"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(python=platform.python_version(), machine=platform.machine(),
                cpus=__import__("os").cpu_count(),
                note="throughput rows: write() time only, one batch reused; memory rows: "
                     "tracemalloc peak over the loop incl. batch generation (slower)")
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    print(f"\nsaved {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
