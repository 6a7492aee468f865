"""Reads of a large activation store: lazy open + one slice, cold and warm page cache.

    python bench/bench_read.py [--gb 5.2] [--quick] [--keep] [--json PATH]

Writes a CODI-GPT-2-shaped store (8 steps × 13 layers × 768, float32, blosc; `hidden`,
`latent_input`, `correct`; batch 64) of about `--gb` gigabytes with random activations (which
compress as badly as real ones), then, each in a fresh process after evicting the store's files
from the page cache (`posix_fadvise(DONTNEED)`, "cold") and once more with the cache warm:

- `import`: importing the store reader with xarray, zarr and dask (once per process);
- `open`: `open_store(path)` (lazy: dask arrays over the zarr chunks);
- `step×layer slice`: `ds.hidden.sel(step=3, layer=6).values`, all examples (a probe's input);
- `example slice`: `ds.hidden.isel(example=i).values`, all steps and layers of one example;
- `step slice`: `ds.latent_input.isel(step=2).values`, all examples.

The store is deleted afterwards unless `--keep`. Disk space is checked first; if the store does
not fit, the largest that does is measured and the README says so. Writes bench/results/bench_read.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
SHAPE = dict(steps=8, layers=13, dim=768)
BATCH = 64
COMPRESSED = 0.667

READ_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from nnsight_codi.store import open_store
import dask.array, xarray.backends.zarr, zarr  # what open_store imports lazily (timed apart)
t_import = time.perf_counter() - t0
path, i = sys.argv[1], int(sys.argv[2])
out = {"import_s": t_import}
t = time.perf_counter(); ds = open_store(path); out["open_s"] = time.perf_counter() - t
t = time.perf_counter(); a = ds.hidden.sel(step=3, layer=6).values; out["step_layer_slice_s"] = time.perf_counter() - t
out["step_layer_slice_mb"] = a.nbytes / 1e6
t = time.perf_counter(); b = ds.hidden.isel(example=i).values; out["example_slice_s"] = time.perf_counter() - t
out["example_slice_mb"] = b.nbytes / 1e6
t = time.perf_counter(); c = ds.latent_input.isel(step=2).values; out["step_slice_s"] = time.perf_counter() - t
out["step_slice_mb"] = c.nbytes / 1e6
out["open_plus_step_layer_slice_s"] = out["open_s"] + out["step_layer_slice_s"]
print(json.dumps(out))
"""


def evict(path: Path) -> None:
    """Drop the store's pages from the page cache (clean pages; no root needed)."""
    for f in path.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def write_store(path: Path, n: int) -> dict:
    from nnsight_codi.store import BackgroundStoreWriter, step_names

    s, nl, d = SHAPE["steps"], SHAPE["layers"], SHAPE["dim"]
    rng = np.random.default_rng(0)
    base = {"hidden": rng.standard_normal((BATCH, s, nl, d), dtype=np.float32),
            "latent_input": rng.standard_normal((BATCH, s, d), dtype=np.float32),
            "correct": rng.random(BATCH) < 0.5}
    w = BackgroundStoreWriter(path, variables=["hidden", "latent_input", "correct"],
                              coords={"example": [f"ex{i}" for i in range(n)], "layer": list(range(nl)),
                                      "step_name": step_names(s - 2)},
                              sizes={"dim": d}, config={"model_id": "bench-read", "num_latents": s - 2},
                              num_layers=nl - 1, chunk=BATCH, command="bench_read")
    t0 = time.perf_counter()
    with w:
        for k, idx in enumerate(w.batches()):
            data = {name: v[: len(idx)] for name, v in base.items()}
            data["hidden"] = data["hidden"] + np.float32(k)  # distinct values per batch
            w.write(idx, data)
    seconds = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"examples": n, "bytes": size, "write_s": round(seconds, 1), "write_mb_s": round(size / 1e6 / seconds, 1)}


def describe_chunks(path: Path) -> dict[str, str]:
    import zarr

    out = {}
    for name in ("hidden", "latent_input"):
        arr = zarr.open_array(path / name, mode="r")
        out[name] = (f"shards {arr.shards} of chunks {arr.chunks}" if arr.shards else f"chunks {arr.chunks}")
    return out


def read_once(path: Path, cold: bool, example: int) -> dict:
    if cold:
        evict(path)
    env = dict(os.environ, PYTHONPATH=str(ROOT.parent))
    res = subprocess.run([sys.executable, "-c", READ_SCRIPT, str(path), str(example)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=5.2, help="store size to write (GB)")
    ap.add_argument("--quick", action="store_true", help="a 0.35 GB store (extrapolate)")
    ap.add_argument("--keep", action="store_true", help="keep the store")
    ap.add_argument("--dir", default=None, help="where to write the store (default: a temp dir on /work if present)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--store", default=None, help="measure this existing store (written by an earlier --keep run)")
    ap.add_argument("--json", default=str(ROOT / "results" / "bench_read.json"))
    args = ap.parse_args(argv)
    gb = 0.35 if args.quick else args.gb
    raw = SHAPE["steps"] * SHAPE["layers"] * SHAPE["dim"] * 4 + SHAPE["steps"] * SHAPE["dim"] * 4
    per_example = int(raw * COMPRESSED)  # bytes on disk: blosc keeps about 2/3 of normal float32 noise
    parent = Path(args.dir or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    wanted = int(gb * 1e9)
    fits = min(wanted, int(free * 0.5))  # leave the machine half its free space
    n = max(BATCH, fits // per_example // BATCH * BATCH)
    root = Path(args.store).parent if args.store else Path(tempfile.mkdtemp(prefix="bench_read_", dir=parent))
    path = root / "big.zarr"
    try:
        if args.store:
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            n = int(json.loads((path / "manifest.json").read_text())["num_examples"])
            written = {"examples": n, "bytes": size, "write_s": None, "write_mb_s": None, "reused": True}
        else:
            written = write_store(path, n)
        print(f"wrote {written['bytes'] / 1e9:.2f} GB ({n} examples) at {written['write_mb_s']} MB/s", file=sys.stderr)
        chunking = describe_chunks(path)
        cold = [read_once(path, cold=True, example=n // 2 + 7) for _ in range(args.repeats)]
        warm = [read_once(path, cold=False, example=n // 2 + 7) for _ in range(args.repeats)]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    med = lambda rows, key: float(np.median([r[key] for r in rows]))  # noqa: E731
    keys = ["import_s", "open_s", "step_layer_slice_s", "example_slice_s", "step_slice_s", "open_plus_step_layer_slice_s"]
    result = {"wanted_gb": gb, "free_gb_before": round(free / 1e9, 1), "store": written,
              "chunking": chunking,
              "cold": {k: med(cold, k) for k in keys}, "warm": {k: med(warm, k) for k in keys},
              "slice_mb": {k: cold[0][k] for k in ("step_layer_slice_mb", "example_slice_mb", "step_slice_mb")},
              "runs": {"cold": cold, "warm": warm}, "deleted": not args.keep}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("store", "cold", "warm")}, indent=1))
    return result


if __name__ == "__main__":
    main()
