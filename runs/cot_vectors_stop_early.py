r"""Why steered chains stop early: the same single injection on the direct prompt and on the
question alone (no instruction), chains compared with the CoT prompt's own.

    python runs/cot_vectors_stop_early.py --study out/study_v2_last_prompt --condition single:4:1 \
        --out results/cot_vectors_v2_last_prompt/stop_early.json

Reads the study's vector store and its saved CoT-prompt outputs (`test/cot.json`), re-asks the
same test questions (the study's config: seed, test_limit, the model's synthetic options).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    """Command line: evaluate one condition on the direct and uninstructed prompts of a study; print JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", required=True, help="a CoT study's output directory (vectors.zarr, test/cot.json)")
    p.add_argument("--condition", required=True, help="single:L:C or continuous:L:C")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    study = Path(args.study)
    try:
        results = json.loads((study / "results.json").read_text())
        cot = json.loads((study / "test" / "cot.json").read_text())["texts"]
    except (OSError, json.JSONDecodeError) as err:
        print(f"cot_vectors_stop_early: cannot read the study at {study}: {err}", file=sys.stderr)
        return 2
    import torch

    from nnsight_codi.cot import chain_agreement, evaluate_condition, load_questions, load_vectors, parse_condition
    from nnsight_codi.loading import load_instruct_model
    from runs.cot_vectors_study import model_synthetic_options

    torch.set_num_threads(1)
    cfg = results["config"]
    condition = parse_condition(args.condition)
    model = load_instruct_model(cfg["model"], "cpu", "float32", None)
    test = load_questions(cfg["dataset"], split="test", limit=cfg["test_limit"], seed=cfg["seed"],
                          **(model_synthetic_options(model) if cfg["dataset"] == "synthetic" else {}))
    vectors = load_vectors(study / "vectors.zarr")
    out = {"study": str(study), "condition": condition.label(), "n": len(test), "prompts": {}}
    for prompt in ("direct", "none"):
        r = evaluate_condition(model, test, condition, vectors, prompt_mode=prompt, max_new_tokens=cfg["max_new_tokens"],
                               progress=False)
        out["prompts"][prompt] = {"accuracy": r.accuracy, "writes_chain": r.reasoning_rate,
                                  **chain_agreement(r.texts, cot)}
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
