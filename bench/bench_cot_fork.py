"""The CoT-vector grid forked vs whole (#25): `single` and `continuous` at one (layer, coef) share the
steered prompt forward and first generated token.

    python bench/bench_cot_fork.py [--examples 32] [--rounds 3] [--max-new-tokens 48] [--json PATH]

Tiny instruct model, vectors extracted once beforehand (32 training questions, generated-token
read, greedy), a grid of 2 layers × 3 coefficients × 2 schedules on `--examples` dev problems
(batch 16, the study's default), every variant a fresh grid file, round-robin in one process after
a warm-up call of each (`common.round_robin`): `whole` (`run_grid(fork=False)`: every cell its own
generation, as before) and `forked` (`fork=True`). Checks that both write the same grid file.

Writes bench/results/bench_cot_fork.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, round_robin  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", default=str(RESULTS / "bench_cot_fork.json"))
    args = parser.parse_args(argv)

    from nnsight_codi.cot import ExtractConfig, extract_vectors, load_questions, load_vectors, run_grid
    from nnsight_codi.loading import load_instruct_model
    from runs.cot_vectors_study import model_synthetic_options

    model = load_instruct_model("tiny-instruct")
    n_layer = int(model._module.config.num_hidden_layers)
    options = model_synthetic_options(model)
    tmp = Path(tempfile.mkdtemp())
    extract_vectors(tmp / "v.zarr", ExtractConfig(synthetic=options, model="tiny-instruct", limit=32, greedy=True,
                                                  max_new_tokens=args.max_new_tokens), model=model, progress=False)
    vectors = load_vectors(tmp / "v.zarr")
    dev = load_questions("synthetic", split="dev", limit=args.examples, **options)
    layers, coefs = (n_layer // 2, n_layer), (0.5, 1.0, 4.0)
    grid = dict(schedules=("single", "continuous"), layers=layers, coefs=coefs, max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size, progress=False)
    files: dict[str, list[str]] = {"whole": [], "forked": []}

    def variant(name: str, fork: bool):
        def go():
            path = tmp / f"{name}{len(files[name])}.jsonl"
            run_grid(model, dev, vectors, path, fork=fork, **grid)
            files[name].append(path.read_text())
        return go

    times = round_robin({"whole": variant("whole", False), "forked": variant("forked", True)}, args.rounds,
                        baseline="whole")
    same = all(f == files["whole"][0] for f in files["whole"] + files["forked"])
    cells = 2 * len(layers) * len(coefs)
    result = {"model": "tiny-instruct", "n_layer": n_layer, "examples": args.examples, "cells": cells,
              "layers": list(layers), "coefs": list(coefs), "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size, "rounds": args.rounds, "times": times, "same_grid_file": same,
              "environment": environment()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(render(result))
    return result


def render(r: dict) -> str:
    t = r["times"]
    f = t["forked"]
    return (f"| CoT grid, tiny-instruct, {r['cells']} cells × {r['examples']} problems, "
            f"≤ {r['max_new_tokens']} tokens, "
            f"batch {r['batch_size']}, {r['rounds']} rounds | whole | forked |\n|---|---|---|\n"
            f"| seconds (median) | {t['whole']['median_s']:.2f} | {f['median_s']:.2f} |\n"
            f"| forked ÷ whole (per-round median [min–max]) | 1 | {f['ratio']:.2f}× [{f['ratio_min']:.2f}–"
            f"{f['ratio_max']:.2f}] |\n| same grid file | | {'yes' if r['same_grid_file'] else 'NO'} |\n")


if __name__ == "__main__":
    main()
