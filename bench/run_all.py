"""Run every benchmark, write bench/results/*.json and regenerate the tables in bench/README.md.

    python bench/run_all.py [--device cuda] [--quick] [--only loop,read] [--render-only]

Each benchmark runs in its own process (so one's memory or threads do not colour the next):
profile_loop (py-spy), bench_loop, bench_capture, bench_session, bench_store, bench_read,
bench_sweep (steering-sweep throughput), bench_fork (forked sweeps: marginal condition cost, NDIF
requests per condition, the steering study), bench_ndif_cost (requests and bytes of base + LoRA
interventions on NDIF), and with `--device cuda` also bench_real_size. Then every table of bench/README.md between
`<!-- BEGIN name -->` and `<!-- END name -->` markers, the headline table included, is rewritten
from the JSON results, so the README always shows the numbers of the last run. `--quick` runs
each benchmark's short version (smoke test while developing; its numbers are noisier).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
README = ROOT / "README.md"

BENCHES = {  # name: (script, json, takes --device)
    "profile": ("profile_loop.py", "profile_loop.json", False),
    "loop": ("bench_loop.py", "bench_loop.json", True),
    "capture": ("bench_capture.py", "bench_capture.json", True),
    "session": ("bench_session.py", "bench_session.json", False),
    "store": ("bench_store.py", "bench_store.json", False),
    "read": ("bench_read.py", "bench_read.json", False),
    "real_size": ("bench_real_size.py", "bench_real_size.json", True),
    "sweep": ("bench_sweep.py", "bench_sweep.json", True),
    "fork": ("bench_fork.py", "bench_fork.json", True),
    "ndif_cost": ("bench_ndif_cost.py", "bench_ndif_cost.json", True),
}


def run(names: list[str], device: str, quick: bool) -> dict[str, float]:
    seconds = {}
    for name in names:
        script, out, takes_device = BENCHES[name]
        cmd = [sys.executable, str(ROOT / script)]
        cmd += ["--json" if name != "store" else "--out", str(RESULTS / out)]
        if quick and name != "real_size":
            cmd.append("--quick")
        if takes_device and device != "cpu":
            cmd += ["--device", device]
        print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT.parent)
        seconds[name] = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"!! {name} failed (exit {proc.returncode}); its README table keeps the last results",
                  file=sys.stderr)
    return seconds


# ------------------------------------------------------------------------------------- tables
def load(name: str) -> dict | None:
    path = RESULTS / BENCHES[name][1]
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(row: dict) -> str:
    if "ratio" not in row:
        return ""
    return f"{row['ratio']:.2f}× [{row['ratio_min']:.2f}–{row['ratio_max']:.2f}]"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def env_line(data: dict) -> str:
    env = data.get("env", {})
    return (f"_{env.get('device', 'cpu')}, torch {env.get('torch')}, {env.get('threads')} torch thread(s), "
            f"{env.get('cpus')} CPUs, load average {env.get('load_avg_1m', 0):.1f} at the start._")


def render_profile(data: dict) -> str:
    profiles = data["profiles"]
    names = list(profiles)
    cats: list[str] = []
    for p in profiles.values():
        cats += [c for c in p["categories"] if c not in cats]
    label = {"pre13": "loop before #13", "eval": "eval (driver)", "capture": "capture (in memory)"}
    rows = [[c] + [f"{profiles[n]['categories'].get(c, 0) * 100:.1f}%" for n in names] for c in cats]
    rows.append(["samples"] + [str(profiles[n]["samples"]) for n in names])
    top = profiles.get("eval") or next(iter(profiles.values()))
    frames = table(["innermost frame (eval)", "share"],
                   [[f"`{k}`", f"{v * 100:.1f}%"] for k, v in list(top["top_frames"].items())[:8]])
    return (f"Batch {data['batch']}, {data['iters']} batches per variant, py-spy at {data['rate']} Hz.\n\n"
            + table(["category"] + [label.get(n, n) for n in names], rows) + "\n\n" + frames)


def render_loop(data: dict) -> str:
    rows = [[name, ms(r["median_s"]), ratio(r)] for name, r in data["variants"].items()]
    c = data["compute"]
    tp = data["throughput_qps"]
    b1, bb = tp["batch 1"], tp[f"batch {data['batch']}"]
    extra = table(["measure", "value"], [
        ["throughput, batch 1 → batch " + str(data["batch"]), f"{b1:,.0f} → {bb:,.0f} questions/s ({bb / b1:.1f}×)"],
        ["FLOPs of one batch (padding included; LM head at the last position only)", f"{c['flops'] / 1e9:.2f} GFLOP"],
        ["padding share of the tokens", f"{c['padding_fraction'] * 100:.0f}%"],
        ["achieved (FLOPs / eval time)", f"{c['achieved_flops_s'] / 1e9:.1f} GFLOP/s"],
        ["measured float32 GEMM peak (1024³, same threads)", f"{c['matmul_peak_flops_s'] / 1e9:.1f} GFLOP/s"],
        ["batch " + str(data["batch"]) + " as a share of that peak", f"{c['fraction_of_peak'] * 100:.0f}%"],
        ["tokenisation / decoding of the batch", f"{ms(data['encode_s'])} / {ms(data['decode_s'])}"],
    ])
    return (f"Tiny CODI ({data['layers']}×{data['dim']}, K = {data['latents']}), batch {data['batch']}, "
            f"≤ {data['max_new_tokens']} answer tokens ({data['answer_tokens']} decoded), {data['repeats']} rounds; "
            f"ratio = median of per-round ratios to `bare` [min–max over rounds].\n\n"
            + table(["variant", "median", "× bare"], rows) + "\n\n" + extra + "\n\n" + env_line(data))


def render_capture(data: dict) -> str:
    parts = []
    for r in data["results"]:
        rows = [[name, f"{v['median_s']:.2f} s", ratio(v)] for name, v in r["variants"].items()]
        parts.append(f"**{r['model']}** ({r['layers']}×{r['dim']}), {r['batches']} batches of {r['batch']}, "
                     f"{r['repeats']} rounds; store creation {ms(r['store_creation_s'])} (before the timer); "
                     f"{r['store_bytes_per_example']:,.0f} store bytes/example.\n\n"
                     + table(["variant", "median", "× in-memory"], rows))
    peaks = data.get("peak_rss_mib") or {}
    if peaks:
        parts.append("Peak RSS of whole `run_capture` runs (tiny, batch 32, fresh process each):\n\n"
                     + table(["examples captured"] + list(peaks), [["peak RSS (MiB)"] + [f"{v:.0f}" for v in peaks.values()]]))
    return "\n\n".join(parts) + "\n\n" + env_line(data)


def render_session(data: dict) -> str:
    rows = []
    for r in data["results"]:
        for task in ("eval", "capture"):
            t = r[task]
            v = t["variants"]
            rows.append([f"{r['model']} b{r['batch']} {task}", ms(v["traced"]["median_s"]), ratio(v["session"]),
                         ratio(v["session remote=local"]), f"{t['requests_per_example']:.3f}",
                         f"{t['request_bytes_per_example']:,.0f}",
                         f"{t['request_zstd_bytes_per_example']:,.0f}" if t["request_zstd_bytes_per_example"] else "",
                         f"{t['response_bytes_per_example']:,.0f}", str(t["lm_calls"])])
    return table(["model, batch, task", "traced", "session (× traced)", "session remote=local (× traced)",
                  "requests/example", "request bytes/example", "zstd", "response bytes/example",
                  "LM calls per request"], rows) + "\n\n" + env_line(data)


def render_store(data: dict) -> str:
    rows = [[r["shape"], r["dtype"], r["compression"], r["examples"], r["throughput_mb_s"], r["examples_per_s"],
             f"{r['bytes_per_example']:,}", r["peak_mb"] if r["peak_mb"] is not None else ""] for r in data["rows"]]
    return table(["shape", "dtype", "compression", "examples", "MB/s", "examples/s", "bytes/example",
                  "peak MB (tracemalloc)"], rows)


def render_read(data: dict) -> str:
    s = data["store"]
    keys = [("open_s", "open_store (lazy)"), ("step_layer_slice_s", "`hidden.sel(step=3, layer=6)`, all examples"),
            ("open_plus_step_layer_slice_s", "open + that slice"), ("example_slice_s", "`hidden.isel(example=i)`, all steps × layers"),
            ("step_slice_s", "`latent_input.isel(step=2)`, all examples"), ("import_s", "imports (xarray, zarr, dask; once per process)")]
    rows = [[label, f"{data['cold'][k]:.2f} s", f"{data['warm'][k]:.2f} s"] for k, label in keys]
    written = f" written at {s['write_mb_s']} MB/s by `BackgroundStoreWriter`" if s.get("write_mb_s") else ""
    return (f"Store: {s['bytes'] / 1e9:.2f} GB on disk, {s['examples']:,} examples{written}; "
            f"`hidden`: {data['chunking']['hidden']}, `latent_input`: {data['chunking']['latent_input']}; median of {len(data['runs']['cold'])} fresh processes each; "
            f"deleted afterwards: {data['deleted']}.\n\n" + table(["read", "cold page cache", "warm"], rows))


def render_sweep(data: dict) -> str:
    load_avg = data.get("load_average") or [0]
    head = f"{data['device']}, {data['model']}, {data.get('cpu_count')} CPUs, load average {load_avg[0]:.1f} at the end"
    if "runs_per_second_whole" not in data["rows"][0]:  # before #25: one variant
        rows = [[r["batch_size"], f"{r['conditions']} × {r['examples']}", f"{r['seconds']:.1f}",
                 f"{r['runs_per_second']:.1f}"] for r in data["rows"]]
        return head + ".\n\n" + table(["batch size", "conditions × examples", "seconds", "runs / s"], rows)
    rows = [[r["batch_size"], f"{r['conditions']} × {r['examples']}", f"{r['runs_per_second']:.1f}",
             f"{r['runs_per_second_whole']:.1f}", f"{r['speedup']:.2f}× [{r['speedup_min']:.2f}–{r['speedup_max']:.2f}]"]
            for r in data["rows"]]
    return (head + f"; forked and whole alternate, {data['rows'][0]['rounds']} round(s), medians.\n\n"
            + table(["batch size", "conditions × examples", "runs / s forked", "runs / s whole (every condition re-run)",
                     "whole ÷ forked"], rows))


def render_fork(data: dict) -> str:
    from bench_fork import render

    return render(data)


def render_ndif_cost(data: dict) -> str:
    wc, fit_raw, fit_z = data["weight_check"], data["fit_raw_bytes"], data["fit_zstd_bytes"]
    rows = [["weight check (one small trace)", wc["requests"], f"{wc['raw_bytes']:,}", f"{wc['zstd_bytes']:,}"]]
    rows += [[f"one batch of {r['batch_size']} questions", r["requests"], f"{r['raw_bytes']:,}", f"{r['zstd_bytes']:,}"]
             for r in data["runs"]]
    rows.append(["fit: per request + per example", "",
                 f"{fit_raw['per_session'] / 1e6:.2f} MB + {fit_raw['per_example']:,.0f} B",
                 f"{fit_z['per_session'] / 1e6:.2f} MB + {fit_z['per_example']:,.0f} B"])
    rows += [[f"GSM8K test (1,319) at batch {g['batch_size']}", g["requests"], "",
              f"{g['mb_sent']:,} MB ({g['kb_per_example'] / 1e3:.2f} MB/example)"] for g in data["gsm8k_test"]]
    a = data["adapter_bytes"]
    return (f"{data['device']}, float32; adapter {a['float32'] / 1e6:.1f} MB (bfloat16 {a['bfloat16'] / 1e6:.1f} MB); "
            f"answers equal to the merged model: {data['answers_equal_merged_fp32']}.\n\n"
            + table(["what", "requests", "bytes (raw)", "bytes (zstd, as sent)"], rows))


def render_headline() -> str:
    rows = []
    loop, cap, ses, read = load("loop"), load("capture"), load("session"), load("read")
    if loop:
        v = loop["variants"]
        rows.append(["CPU tiny b64: eval ÷ bare PyTorch loop", "≤ 1.15×", ratio(v["eval"])])
        rows.append(["CPU tiny b64: capture (in memory) ÷ bare loop", "≤ 1.3×", ratio(v["capture"])])
        rows.append(["CPU tiny b64: bare loop now ÷ before #13", "", ratio(v["bare"])[:0] +
                     f"{v['bare']['median_s'] / v['bare pre-#13']['median_s']:.2f}×"])
        tp = loop["throughput_qps"]
        bb = tp[f"batch {loop['batch']}"]
        rows.append([f"CPU tiny: questions/s batch 1 → {loop['batch']}", "report",
                     f"{tp['batch 1']:,.0f} → {bb:,.0f}"])
        rows.append(["CPU tiny b64: share of measured GEMM peak", "report",
                     f"{loop['compute']['fraction_of_peak'] * 100:.0f}%"])
    if cap:
        for r in cap["results"]:
            v = r["variants"]
            rows.append([f"capture→zarr ÷ in-memory, steady state ({r['model']} b{r['batch']})", "≤ 1.15×",
                         ratio(v["→ zarr background"]) + f" (synchronous writer: {v['→ zarr synchronous']['ratio']:.2f}×)"])
        peaks = cap.get("peak_rss_mib") or {}
        if peaks:
            rows.append(["peak RSS vs examples captured", "flat",
                         " / ".join(f"{v:.0f}" for v in peaks.values()) + f" MiB at {' / '.join(map(str, peaks))}"])
    if ses:
        for r in ses["results"]:
            t = r["capture"]
            rows.append([f"session ÷ traced, capture ({r['model']} b{r['batch']})", "report",
                         f"{t['variants']['session']['ratio']:.2f}× (remote=local {t['variants']['session remote=local']['ratio']:.2f}×); "
                         f"{t['requests_per_example']:.3f} requests and {t['request_bytes_per_example']:,.0f} B sent per example"])
    if read:
        rows.append([f"open + one slice of a {read['store']['bytes'] / 1e9:.1f} GB store", "< 1 s",
                     f"{read['cold']['open_plus_step_layer_slice_s']:.2f} s cold, {read['warm']['open_plus_step_layer_slice_s']:.2f} s warm"])
    fork = load("fork")
    if fork and fork.get("marginal"):
        r = fork["marginal"]["one_more_kv_condition_over_unsteered_run"]
        rows.append(["CPU tiny b64: one more KV condition of a sweep ÷ a whole unsteered run (#25)", "≤ 0.5×",
                     f"{r['forked']['ratio']:.2f}× [{r['forked']['min']:.2f}–{r['forked']['max']:.2f}] "
                     f"(unforked: {r['whole']['ratio']:.2f}×)"])
    if fork and fork.get("ndif"):
        n = fork["ndif"]
        rows.append(["NDIF-shaped sweep (tiny b64, 8 conditions): requests / bytes sent per condition", "report",
                     f"{n['forked']['requests_per_condition']:.3f} / {n['forked']['bytes_per_condition']:,.0f} B "
                     f"(unforked: {n['whole']['requests_per_condition']:.0f} / {n['whole']['bytes_per_condition']:,.0f} B)"])
    rows.append(["GPU targets (H100: ≥ 1,000 q/s; capture ≤ 1.1×)", "", "not measured: no GPU lent to this task"])
    return table(["measure", "target", "measured"], rows)


RENDERERS = {"headline": lambda: render_headline(), "profile": lambda: render_profile(load("profile")),
             "loop": lambda: render_loop(load("loop")), "capture": lambda: render_capture(load("capture")),
             "session": lambda: render_session(load("session")), "store": lambda: render_store(load("store")),
             "read": lambda: render_read(load("read")), "sweep": lambda: render_sweep(load("sweep")),
             "fork": lambda: render_fork(load("fork")),
             "ndif_cost": lambda: render_ndif_cost(load("ndif_cost"))}


def render_readme(path: Path = README) -> list[str]:
    """Rewrite every `<!-- BEGIN name -->…<!-- END name -->` block from the results; return the names done."""
    text = path.read_text()
    done = []
    for name, fn in RENDERERS.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(.*?)(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            continue
        try:
            body = fn()
        except (TypeError, KeyError) as e:  # no results yet for this table
            print(f"!! table {name}: {e!r}; left as it was", file=sys.stderr)
            continue
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)
        done.append(name)
    path.write_text(text)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {list(BENCHES)}")
    ap.add_argument("--render-only", action="store_true", help="only regenerate the README tables")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else [n for n in BENCHES if n != "real_size" or args.device != "cpu"]
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}", file=sys.stderr)
        return 2
    if not args.render_only:
        seconds = run(names, args.device, args.quick)
        print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()), file=sys.stderr)
    print("README tables regenerated: " + ", ".join(render_readme()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
