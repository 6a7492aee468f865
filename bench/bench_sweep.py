"""Sweep throughput: (conditions × examples) per second vs batch size, forked vs whole, on one grid.

    python bench/bench_sweep.py [--examples 256] [--batch-sizes 16,64,256] [--rounds 2] [--device cpu] [--json PATH]

One grid on the shipped tiny CODI: the unsteered baseline, hidden and KV steering for the pairs
(1,6) and (6,1) at coefficient 1, and the random / mean / zero patch baselines (8 conditions).
The vectors are computed once beforehand (a reference capture of 100 problems), so each timing is
`run_sweep` alone: the latent loop with its hooks, scoring, and writing the store. Each run writes a
fresh store. Per batch size, `fork: true` (each batch's conditions branch from one unsteered trunk)
and `fork: false` (every condition re-runs the whole loop) alternate for `--rounds` rounds; the
table gives the median runs/s of each and the median per-round ratio. Prints a markdown table and
writes bench/results/bench_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=256)
    p.add_argument("--batch-sizes", default="16,64,256")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=str(ROOT / "results" / "bench_sweep.json"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="64 examples, batch sizes 16,64, 1 round (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.examples, args.batch_sizes, args.rounds = 64, "16,64", 1

    import shutil
    import statistics

    from nnsight_codi.interventions.steering_sweep import SweepConfig, reference_vectors, run_sweep
    from nnsight_codi.loading import load_codi_model

    codi = load_codi_model("tiny", args.device)
    grid = dict(model="tiny", limit=args.examples, pairs=[[1, 6], [6, 1]], coefs=[1.0], max_new_tokens=16,
                device=args.device, reference_limit=100)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reference_vectors(codi, SweepConfig(**grid), Path(tmp), progress=False)
        grid["vectors"] = str(Path(tmp) / "vectors.zarr")
        run_sweep(SweepConfig(**dict(grid, limit=8)), Path(tmp) / "warm", codi=codi, progress=False)
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            times: dict[bool, list[float]] = {True: [], False: []}
            for r in range(args.rounds):
                for fork in (True, False):
                    out = Path(tmp) / f"b{bs}-{fork}-{r}"
                    start = time.perf_counter()
                    summary = run_sweep(SweepConfig(**grid, batch_size=bs, fork=fork), out, codi=codi, progress=False)
                    times[fork].append(time.perf_counter() - start)
                    shutil.rmtree(out)
            runs = summary["runs_now"]
            ratios = [w / f for f, w in zip(times[True], times[False])]
            rows.append({"batch_size": bs, "conditions": summary["conditions"], "examples": summary["examples"],
                         "runs": runs, "seconds": round(statistics.median(times[True]), 2),
                         "runs_per_second": round(runs / statistics.median(times[True]), 1),
                         "seconds_whole": round(statistics.median(times[False]), 2),
                         "runs_per_second_whole": round(runs / statistics.median(times[False]), 1),
                         "speedup": round(statistics.median(ratios), 2), "speedup_min": round(min(ratios), 2),
                         "speedup_max": round(max(ratios), 2), "rounds": args.rounds})
            print(f"batch {bs}: {rows[-1]['runs_per_second']} runs/s forked, {rows[-1]['runs_per_second_whole']} whole",
                  file=sys.stderr)
    result = {"device": args.device, "model": "tiny (4 x 128, K=6)", "load_average": os.getloadavg(),
              "cpu_count": os.cpu_count(), "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print("| batch size | conditions × examples | runs / s forked | runs / s whole | whole ÷ forked |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['conditions']} × {r['examples']} | {r['runs_per_second']} | "
              f"{r['runs_per_second_whole']} | {r['speedup']}× [{r['speedup_min']}–{r['speedup_max']}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
