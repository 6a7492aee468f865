"""Where the time of one latent-loop batch goes: a py-spy sampling profile, in categories.

    python bench/profile_loop.py [--batch 64] [--iters 12] [--variants eval,capture] [--json PATH]

Runs `encode → loop → decode` of one batch (tiny CODI, K = 6, ≤ 16 answer tokens) `--iters` times
in a child process under `py-spy record` (100 samples/s, Python stacks) for each variant:
`eval` (`run_loop` without hooks: the driver), `capture` (`run_loop` + `Capture(hidden of all
layers, latent_input)` + `assemble`), `pre13` (the loop as it was before #13, for comparison).
Every sample inside the batch is put in one category by its innermost frame (first rule that
matches): tokenisation, decoding, capture assembly, KV-cache handling, attention-mask building,
hidden-state collection (transformers' output capturing), nnsight interleaving, loop bookkeeping,
host syncs (the "all finished?" read), capture hooks, LM tensor ops (matmuls, attention, GELU,
norms/embeddings/other), LM Python (module calls, HF glue). Needs `py-spy` (`pip install py-spy`).
Writes bench/results/profile_loop.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS  # noqa: E402

WORKLOAD = r"""
import sys
sys.path.insert(0, {bench!r})
import torch
from common import build, tiny_questions, bare_loop_pre13
from nnsight_codi.tracing.capture_hook import Capture, assemble
from nnsight_codi.tracing.loop import run_loop
variant, batch, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
codi = build("tiny")
questions = tiny_questions(codi, batch)
hook = Capture(["hidden", "latent_input"], range(codi.num_layers + 1), codi.num_latents)

def work_once():
    prompts = codi.encode(questions)
    if variant == "capture":
        tokens, records = run_loop(codi, prompts, [hook], max_new_tokens=16)
        assemble(records, hook, prompts.attention_mask, prompts.input_ids.shape[1] + 9, codi.hidden_size)
    elif variant == "pre13":
        tokens = bare_loop_pre13(codi, prompts, 16)
    else:
        tokens, _ = run_loop(codi, prompts, max_new_tokens=16)
    codi.decode(tokens)

with torch.inference_mode():
    work_once()
    for _ in range(iters):
        work_once()
"""

MATMUL = ("Conv1D.forward", "Linear.forward", "linear")
RULES: list[tuple[str, object]] = [
    ("tokenisation", lambda st, leaf, f: "encode (nnsight_codi/tracing/codi_model.py" in st),
    ("decoding", lambda st, leaf, f: "decode_answers" in st),
    ("capture assembly (records → numpy)", lambda st, leaf, f: "assemble (nnsight_codi/tracing/capture_hook.py" in st),
    ("KV-cache handling", lambda st, leaf, f: f.endswith("cache_utils.py")),
    ("attention-mask building", lambda st, leaf, f: f.endswith("masking_utils.py")),
    ("hidden-state collection", lambda st, leaf, f: "output_capturing" in f),
    ("host syncs (all finished?)", lambda st, leaf, f: leaf.startswith("LatentLoopState.done")),
    ("loop bookkeeping", lambda st, leaf, f: f.endswith(("tracing/loop.py", "tracing/batching.py", "codi_model.py",
                                                         "common.py"))),
    ("capture hooks", lambda st, leaf, f: f.endswith(("tracing/capture_hook.py", "tracing/hooks.py"))),
    ("nnsight interleaving", lambda st, leaf, f: "nnsight/" in f),
    ("LM: matmuls", lambda st, leaf, f: leaf.startswith(MATMUL)),
    ("LM: attention (sdpa)", lambda st, leaf, f: "attention_forward" in leaf),
    ("LM: GELU", lambda st, leaf, f: f.endswith("activations.py") or "gelu" in leaf.lower()),
    ("LM: norms, embeddings, dropout", lambda st, leaf, f: leaf.startswith(("layer_norm", "embedding", "dropout",
                                                                             "LlamaRMSNorm", "rms_norm"))),
    ("LM: Python (module calls, HF glue)", lambda st, leaf, f: "transformers/" in f or "torch/" in f),
]


def categorise(raw: str, marker: str = "work_once") -> dict:
    counts: collections.Counter = collections.Counter()
    leaves: collections.Counter = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if marker not in stack or not n.isdigit():
            continue
        leaf = stack.split(";")[-1]
        match = re.search(r"\((.*):\d+\)", leaf)
        path = match.group(1) if match else leaf
        name = next((cat for cat, rule in RULES if rule(stack, leaf, path)), "other")
        counts[name] += int(n)
        leaves[f"{leaf.split(' ')[0]} ({path})"] += int(n)
    total = sum(counts.values())
    return {"samples": total,
            "categories": {k: v / total for k, v in counts.most_common()},
            "top_frames": {k: v / total for k, v in leaves.most_common(15)}}


def profile(variant: str, batch: int, iters: int, rate: int) -> dict:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    out = Path(tempfile.mkdtemp()) / f"{variant}.txt"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    code = WORKLOAD.format(bench=str(Path(__file__).resolve().parent))
    subprocess.run([spy, "record", "-r", str(rate), "-f", "raw", "-o", str(out), "--", sys.executable, "-c", code,
                    variant, str(batch), str(iters)], check=True, env=env, capture_output=True)
    return categorise(out.read_text())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--variants", default="pre13,eval,capture")
    ap.add_argument("--quick", action="store_true", help="4 iterations")
    ap.add_argument("--json", default=str(RESULTS / "profile_loop.json"))
    args = ap.parse_args(argv)
    iters = 4 if args.quick else args.iters
    result = {"batch": args.batch, "iters": iters, "rate": args.rate,
              "profiles": {v: profile(v, args.batch, iters, args.rate) for v in args.variants.split(",") if v}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for v, p in result["profiles"].items():
        print(f"\n{v} ({p['samples']} samples)")
        for k, share in p["categories"].items():
            print(f"  {share * 100:5.1f}%  {k}")
    return result


if __name__ == "__main__":
    main()
