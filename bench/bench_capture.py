"""Capture overhead vs the plain latent loop, measured side by side in one process.

    python bench/bench_capture.py [--sizes tiny,gpt2] [--batch 8] [--repeats 5] [--device cpu|cuda] [--json PATH]

For each model (the shipped tiny CODI, and a CODI-GPT-2-sized model built from config with
random weights) and one batch of synthetic questions, median wall time of:

- `torch loop`     the loop state machine driving the HF model directly (no nnsight at all);
- `driver`         `codi.latent_generate(prompts)` called directly (nnsight wrapper, no trace);
- `trace`          `run_loop` with no hooks (one nnsight trace over the loop);
- `trace+capture`  `run_loop` with `Capture(hidden all layers, latent_input)`;
- `session`        the NDIF-shaped session executor, locally;
- `capture→zarr`   `run_capture` of the same questions into a fresh store (incl. writing).

Each variant is timed round-robin (one call of each per round, after one warm-up call of each).
Ratios are to `torch loop`. Peak RSS vs number of examples runs `run_capture` in fresh
subprocesses. Prints a markdown table and writes bench/results/bench_capture.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))


def build(size: str, device: str):
    from nnsight_codi.models import load_model

    if size == "tiny":
        return load_model("tiny", device=device)
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from nnsight_codi.models.config import CodiConfig
    from nnsight_codi.models.converted import save_converted
    from nnsight_codi.models.projection import build_projection
    from nnsight_codi.tokenization import build_word_tokenizer

    tok = build_word_tokenizer()
    vocab = len(tok)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=vocab + 3, n_layer=12, n_embd=768, n_head=12, n_positions=1024,
                                    bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    out = Path(tempfile.mkdtemp()) / "gpt2-sized"
    cfg = CodiConfig(pad_id=vocab, bot_id=vocab + 1, eot_id=vocab + 2, num_latents=6, eos_id=tok.eos_token_id)
    save_converted(out, lm, tok, build_projection(768, 768), cfg)
    assert isinstance(tok, PreTrainedTokenizerFast)
    return load_model(out, device=device)


def torch_loop(codi, prompts, max_new_tokens):
    state = codi.new_loop_state(prompts, max_new_tokens=max_new_tokens)
    lm, prj, cache = codi._module, codi.prj._module, None
    while not state.done:
        kwargs = state.call_kwargs(project=prj)
        out = lm(**kwargs, past_key_values=cache, use_cache=True, output_hidden_states=True)
        cache = out.past_key_values
        state.observe(out.hidden_states[-1][:, -1:], out.logits[:, -1])
    return state.generated()


def median_times(fns: dict, repeats: int) -> dict:
    """Median wall time of each function, timed round-robin (one call of each per round) after
    one warm-up call of each, so clock ramps and cache effects fall on every variant alike."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns.values():
        fn()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_model(size, device, batch, repeats, max_new_tokens):
    from nnsight_codi.capture import CaptureConfig, run_capture
    from nnsight_codi.data.sources import load_eval_dataset
    from nnsight_codi.tracing.capture import Capture
    from nnsight_codi.tracing.hooks import run_loop
    from nnsight_codi.tracing.session import plain_lm_model, run_latent_session

    codi = build(size, device)
    questions = list(load_eval_dataset("synthetic", limit=batch, seed=3)["question"])
    prompts = codi.encode(questions)
    hook = Capture(["hidden", "latent_input"], range(codi.num_layers + 1), codi.num_latents)
    lm = plain_lm_model(codi)

    def capture_once():
        path = Path(tempfile.mkdtemp()) / "s.zarr"
        run_capture(path, CaptureConfig(model=size, limit=batch, seed=3, batch_size=batch,
                                         max_new_tokens=max_new_tokens), codi=codi, progress=False)
        return path

    with torch.inference_mode():
        rows = median_times({
            "torch loop": lambda: torch_loop(codi, prompts, max_new_tokens),
            "driver": lambda: codi.latent_generate(prompts, max_new_tokens=max_new_tokens),
            "trace": lambda: run_loop(codi, prompts, [], max_new_tokens=max_new_tokens),
            "trace+capture": lambda: run_loop(codi, prompts, [hook], max_new_tokens=max_new_tokens),
            "session": lambda: run_latent_session(lm, codi.prj._module, codi.codi_config, prompts,
                                                  max_new_tokens=max_new_tokens),
            "capture→zarr": capture_once,
        }, repeats)
    path = capture_once()
    store_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"model": size, "layers": codi.num_layers, "dim": codi.hidden_size, "latents": codi.num_latents,
            "batch": batch, "max_new_tokens": max_new_tokens, "seconds": rows,
            "ratio": {k: v / rows["torch loop"] for k, v in rows.items()},
            "store_bytes_per_example": store_bytes / batch}


PEAK_SCRIPT = """
import resource, sys, tempfile
from pathlib import Path
from nnsight_codi.capture import CaptureConfig, run_capture
n = int(sys.argv[1])
run_capture(Path(tempfile.mkdtemp()) / "s.zarr", CaptureConfig(model="tiny", limit=n, batch_size=32,
            max_new_tokens=16), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss(ns):
    out = {}
    for n in ns:
        res = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(n)], capture_output=True, text=True, check=True)
        out[n] = int(res.stdout.strip().splitlines()[-1]) / 1024  # MiB
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="tiny,gpt2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peak", default="32,128,512", help="dataset sizes for peak RSS ('' to skip)")
    parser.add_argument("--json", default=str(ROOT / "results" / "bench_capture.json"), help="where to write the results")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = [bench_model(s, args.device, args.batch, args.repeats, args.max_new_tokens)
               for s in args.sizes.split(",") if s]
    peaks = peak_rss([int(n) for n in args.peak.split(",") if n]) if args.peak else {}
    names = list(results[0]["seconds"]) if results else []
    print("| model | " + " | ".join(names) + " | store bytes/example |")
    print("|---|" + "---|" * (len(names) + 1))
    for r in results:
        cells = [f"{r['seconds'][n] * 1000:.0f} ms ({r['ratio'][n]:.2f}×)" for n in names]
        print(f"| {r['model']} ({r['layers']}×{r['dim']}, K={r['latents']}, batch {r['batch']}) | " + " | ".join(cells)
              + f" | {r['store_bytes_per_example']:,.0f} |")
    if peaks:
        print("\n| examples captured (tiny) | " + " | ".join(str(n) for n in peaks) + " |")
        print("|---|" + "---|" * len(peaks))
        print("| peak RSS (MiB) | " + " | ".join(f"{v:.0f}" for v in peaks.values()) + " |")
    info = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(), "batch": args.batch, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "results": results, "peak_rss_mib": peaks, "self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    out = Path(args.json)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
