r"""Ask an instruct model the same problems under hand-written instructions; print how many outputs
write a chain and how many are right (what a held-out phrasing's failure is made of).

    python runs/instruct_probe.py --model tiny-instruct --out results/train_tiny_instruct_v3/negation_probe.md

The default probes take apart the one held-out phrasing v3 misreads ("Do not answer directly ,
show your work ."): the same negated first clause with other CoT clauses, other negated first
clauses with "show your work", and the trained phrases it contains. Problems: `--n` of the
synthetic dev split (seed `--seed`), drawn from the model's recorded distribution.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROBES = (
    "Do not answer directly , show your work .",  # held out (CoT)
    "Do not answer directly , show your reasoning .",
    "Do not answer directly , explain each step .",
    "Do not answer directly , think step by step .",
    "Do not answer immediately , show your work .",
    "Do not reply directly , show your work .",
    "Do not answer right away , show your work .",
    "Show your work , do not answer directly .",
    "Show your work .",  # trained (CoT)
    "Do not show your work .",  # trained (direct)
    "Answer directly .",  # trained (direct)
)


def main(argv: list[str] | None = None) -> int:
    """Command line: generate under each probe instruction; print (and optionally write) a table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-instruct")
    p.add_argument("--n", type=int, default=200, help="problems per instruction")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--probe", action="append", default=None, help="an instruction (repeatable; default: PROBES)")
    p.add_argument("--out", default=None, help="write the markdown table here (and a .json beside it)")
    args = p.parse_args(argv)
    if args.n < 1:
        print("instruct_probe: --n must be >= 1", file=sys.stderr)
        return 2
    from nnsight_codi.cot import load_questions
    from nnsight_codi.instruct import chat_prompt, generate_chat, score_outputs, with_instruction
    from nnsight_codi.loading import load_instruct_model
    from runs.cot_vectors_study import model_synthetic_options

    try:
        model = load_instruct_model(args.model, "cpu", "float32", None)
    except (OSError, ValueError) as err:
        print(f"instruct_probe: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    tok = model.tokenizer
    data = load_questions("synthetic", "dev", args.n, seed=args.seed, **model_synthetic_options(model))
    rows = []
    for text in args.probe or PROBES:
        prompts = [chat_prompt(tok, with_instruction(q, text)) for q in data["question"]]
        r = score_outputs(generate_chat(model, tok, prompts, max_new_tokens=48), list(data["answer"]))
        rows.append({"instruction": text, "n": r.n, "chain_rate": r.chain_rate, "accuracy": r.accuracy})
    md = [f"# Instruction probe: {args.model}", "",
          f"{args.n} synthetic dev problems (seed {args.seed}) per instruction, greedy, 48 new tokens.", "",
          "| instruction | writes a chain | correct |", "|---|---|---|"]
    md += [f"| {r['instruction']} | {100 * r['chain_rate']:.0f}% | {100 * r['accuracy']:.0f}% |" for r in rows]
    text = "\n".join(md) + "\n"
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps({"model": args.model, "seed": args.seed, "rows": rows},
                                                       indent=2) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
