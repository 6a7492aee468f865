"""Forking the latent loop (#25): what one more condition of a sweep costs, forked vs re-run whole.

    python bench/bench_fork.py [--examples 256] [--rounds 3] [--study-limit 100] [--quick] [--json PATH]

Tiny CODI, batch 64, ≤ 16 answer tokens, vectors computed once beforehand (a reference capture of
100 problems), every variant a fresh `run_sweep` store, all variants of a part in one process:

1. **Marginal condition cost.** Round-robin per round: `fixed` (a sweep of `none` over one
   problem: process-independent fixed costs of a sweep — dataset, store, config), `none` (the
   unsteered run of N problems), `kv forked` and `kv whole` (`none` + 30 KV conditions: 5 latent
   pairs × 6 coefficients, `fork: true` / `false`). One more KV condition costs
   `(T_kv − T_none) / 30` and a whole unsteered run `T_none − T_fixed`; their ratio per round,
   median [min–max] over rounds (#25's target: ≤ 0.5; 1.13 before).
2. **NDIF-shaped session** (`remote="local"`, every request serialised as for NDIF and counted):
   one batch of 64 under bench_sweep's 8 conditions (none; hidden and KV for pairs (1,6), (6,1);
   random / mean / zero patches), forked (one session: the prefix once, every branch) vs whole (one
   session per condition): requests and bytes sent per condition, and time.
3. **The steering study's sweep** (`runs/steering_study.py`'s grid: none + (hidden, KV) × 30 ordered
   pairs × coefficients ±0.5, ±1, ±2 + random / mean / zero patches = 364 conditions) on
   `--study-limit` problems, forked then whole: wall time and whether every stored answer is equal.

Writes bench/results/bench_fork.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_session import RequestCounter  # noqa: E402
from common import RESULTS, environment  # noqa: E402

KV_PAIRS = [[1, 6], [6, 1], [2, 4], [4, 2], [3, 5]]
COEFS = [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]


def _timed_sweep(codi, cfg, tmp: Path) -> tuple[float, Path]:
    from nnsight_codi.interventions.steering_sweep import run_sweep

    out = Path(tempfile.mkdtemp(dir=tmp))
    start = time.perf_counter()
    run_sweep(cfg, out, codi=codi, progress=False)
    return time.perf_counter() - start, out


def marginal(codi, grid: dict, examples: int, rounds: int, tmp: Path) -> dict:
    from nnsight_codi.interventions.steering_sweep import SweepConfig

    none = dict(grid, modes=[], baselines=[], pairs=[])
    kv = dict(grid, modes=["kv"], pairs=KV_PAIRS, coefs=COEFS, baselines=[])
    variants = {"fixed": SweepConfig(**none, limit=1), "none": SweepConfig(**none, limit=examples),
                "kv forked": SweepConfig(**kv, limit=examples, fork=True),
                "kv whole": SweepConfig(**kv, limit=examples, fork=False)}
    n_cond = len(KV_PAIRS) * len(COEFS)
    _timed_sweep(codi, SweepConfig(**kv, limit=8, fork=True), tmp)  # warm-up (imports, first calls)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        for name, cfg in variants.items():
            seconds, out = _timed_sweep(codi, cfg, tmp)
            times[name].append(seconds)
            shutil.rmtree(out)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()), file=sys.stderr)
    ratios = {}
    for mode in ("forked", "whole"):
        per_round = [((kv - none) / n_cond) / (none - fixed) for kv, none, fixed in
                     zip(times[f"kv {mode}"], times["none"], times["fixed"])]
        ratios[mode] = {"ratio": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}
    speed = [w / f for w, f in zip(times["kv whole"], times["kv forked"])]
    return {"examples": examples, "conditions": n_cond, "rounds": rounds, "times_s": times,
            "one_more_kv_condition_over_unsteered_run": ratios,
            "kv_sweep_whole_over_forked": {"ratio": statistics.median(speed), "min": min(speed), "max": max(speed)}}


def ndif_shaped(codi, vectors_path: str, batch: int, rounds: int) -> dict:
    from common import tiny_questions

    from nnsight_codi.interventions.conditions import ModelShape, Resources, run_conditions
    from nnsight_codi.interventions.steering_sweep import SweepConfig, expand_conditions
    from nnsight_codi.store.vector_store import open_vectors

    cfg = SweepConfig(pairs=[[1, 6], [6, 1]], coefs=[1.0])
    shape = ModelShape.of(codi)
    conditions = expand_conditions(cfg, shape.num_latents)
    res = Resources.from_vectors(open_vectors(vectors_path), seed=1)
    prompts = codi.encode(tiny_questions(codi, batch))
    idx = list(range(batch))
    out = {"batch": batch, "conditions": len(conditions)}
    tokens = {}
    times: dict[str, list[float]] = {"forked": [], "whole": []}
    for r in range(rounds + 1):
        for mode in ("forked", "whole"):
            with RequestCounter() as counter:
                start = time.perf_counter()
                tokens[mode] = run_conditions(codi, prompts, conditions, shape, res, idx, 16, remote="local",
                                              fork=mode == "forked")
                seconds = time.perf_counter() - start
            if r:
                times[mode].append(seconds)
            out[mode] = {"requests": len(counter.sizes), "requests_per_condition": len(counter.sizes) / len(conditions),
                         "bytes_per_condition": sum(counter.sizes) / len(conditions),
                         "zstd_bytes_per_condition": (sum(counter.compressed) / len(conditions)
                                                      if counter.compressed else None)}
    for mode in times:
        out[mode]["median_s"] = statistics.median(times[mode])
    speed = [w / f for w, f in zip(times["whole"], times["forked"])]
    out["whole_over_forked"] = {"ratio": statistics.median(speed), "min": min(speed), "max": max(speed)}
    out["answers_equal"] = all(torch.equal(a, b) for a, b in zip(tokens["forked"], tokens["whole"]))
    return out


def study(codi, vectors_path: str, limit: int, tmp: Path) -> dict:
    from nnsight_codi.store.sweep_store import condition_table, open_sweep

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from runs.steering_study import Config

    base = Config(limit=limit, coefs=(-2.0, -1.0, -0.5, 0.5, 1.0, 2.0), batch_size=100).sweep_config()
    base.vectors = vectors_path
    rows, stores = {}, {}
    for mode in ("forked", "whole"):
        base.fork = mode == "forked"
        seconds, out = _timed_sweep(codi, base, tmp)
        ds = open_sweep(out)
        stores[mode] = ds
        rows[mode] = {"seconds": round(seconds, 1), "runs": int(ds["complete"].values.sum()),
                      "runs_per_second": round(float(ds["complete"].values.sum()) / seconds, 1)}
        print(f"study {mode}: {seconds:.1f}s", file=sys.stderr)
    a, b = stores["forked"], stores["whole"]
    same = all(np.array_equal(a[v].values, b[v].values, equal_nan=True) for v in ("answer_pred", "correct"))
    same_table = condition_table(a).equals(condition_table(b))
    return {"limit": limit, "conditions": int(a.sizes["condition"]), **rows,
            "whole_over_forked": rows["whole"]["seconds"] / rows["forked"]["seconds"],
            "answers_equal": bool(same), "table_equal": bool(same_table)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--study-limit", type=int, default=100, help="0 skips the steering-study part")
    p.add_argument("--parts", default="marginal,ndif,study")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=str(RESULTS / "bench_fork.json"))
    p.add_argument("--quick", action="store_true", help="64 examples, 1 round, study on 10 problems")
    args = p.parse_args(argv)
    if args.quick:
        args.examples, args.rounds, args.study_limit = 64, 1, 10

    from nnsight_codi.interventions.steering_sweep import SweepConfig, reference_vectors
    from nnsight_codi.loading import load_codi_model

    torch.set_num_threads(1)
    codi = load_codi_model("tiny", args.device)
    grid = dict(model="tiny", max_new_tokens=16, batch_size=64, device=args.device, reference_limit=100)
    parts = set(args.parts.split(","))
    result: dict = {"environment": environment(), "model": "tiny (4 x 128, K=6)", "batch_size": 64,
                    "max_new_tokens": 16}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference_vectors(codi, SweepConfig(**grid), tmp, progress=False)
        vectors = str(tmp / "vectors.zarr")
        grid["vectors"] = vectors
        if "marginal" in parts:
            result["marginal"] = marginal(codi, grid, args.examples, args.rounds, tmp)
        if "ndif" in parts:
            result["ndif"] = ndif_shaped(codi, vectors, 64, max(args.rounds, 2))
        if "study" in parts and args.study_limit:
            result["study"] = study(codi, vectors, args.study_limit, tmp)
    result["load_average_end"] = __import__("os").getloadavg()[0]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


def render(data: dict) -> str:
    """The markdown tables of bench/README.md's fork section."""
    env = data["environment"]
    lines = [f"{env['device']}, torch {env['torch']}, {env['threads']} torch thread(s), {env['cpus']} CPUs, load "
             f"average {env['load_avg_1m']:.1f} at the start, {data.get('load_average_end', 0):.1f} at the end; "
             f"tiny CODI, batch {data['batch_size']}, ≤ {data['max_new_tokens']} answer tokens.", ""]
    m = data.get("marginal")
    if m:
        r = m["one_more_kv_condition_over_unsteered_run"]
        med = {k: statistics.median(v) for k, v in m["times_s"].items()}
        s = m["kv_sweep_whole_over_forked"]
        lines += ["| KV sweep (none + 30 KV conditions), " f"{m['examples']} problems, {m['rounds']} rounds | whole | forked |",
                  "|---|---|---|",
                  f"| one more KV condition ÷ a whole unsteered run | {r['whole']['ratio']:.2f}× "
                  f"[{r['whole']['min']:.2f}–{r['whole']['max']:.2f}] | **{r['forked']['ratio']:.2f}×** "
                  f"[{r['forked']['min']:.2f}–{r['forked']['max']:.2f}] |",
                  f"| sweep wall time (median) | {med['kv whole']:.1f} s | {med['kv forked']:.1f} s |",
                  f"| whole ÷ forked |  | {s['ratio']:.2f}× [{s['min']:.2f}–{s['max']:.2f}] |",
                  f"| unsteered sweep alone / fixed costs | {med['none']:.1f} s / {med['fixed']:.1f} s | |", ""]
    n = data.get("ndif")
    if n:
        f, w = n["forked"], n["whole"]

        def z(x):
            return "" if x is None else f"{x:,.0f}"
        lines += [f"| NDIF-shaped session, remote=\"local\", one batch of {n['batch']} × {n['conditions']} conditions "
                  "| whole (a session per condition) | forked (one session) |", "|---|---|---|",
                  f"| requests per condition | {w['requests_per_condition']:.3f} | {f['requests_per_condition']:.3f} |",
                  f"| bytes sent per condition (raw) | {w['bytes_per_condition']:,.0f} | {f['bytes_per_condition']:,.0f} |",
                  f"| bytes sent per condition (zstd) | {z(w['zstd_bytes_per_condition'])} | "
                  f"{z(f['zstd_bytes_per_condition'])} |",
                  f"| time per batch (median) | {w['median_s']:.2f} s | {f['median_s']:.2f} s "
                  f"({n['whole_over_forked']['ratio']:.2f}× faster) |",
                  f"| answers equal | | {n['answers_equal']} |", ""]
    st = data.get("study")
    if st:
        lines += [f"| steering study sweep, {st['conditions']} conditions × {st['limit']} problems | whole | forked |",
                  "|---|---|---|",
                  f"| wall time | {st['whole']['seconds']:.1f} s | {st['forked']['seconds']:.1f} s "
                  f"({st['whole_over_forked']:.2f}× faster) |",
                  f"| runs / s | {st['whole']['runs_per_second']:.1f} | {st['forked']['runs_per_second']:.1f} |",
                  f"| every stored answer equal / table equal | | {st['answers_equal']} / {st['table_equal']} |"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
