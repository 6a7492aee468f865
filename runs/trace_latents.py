"""Trace the tiny CODI's latent loop: read every layer at every step, steer one latent, compare.

    python runs/trace_latents.py [--model tiny] [--coefficient 8] [--step 3]

Shows the public API: the loop is an nnsight tracing context (`codi.latent_generate`), each LM
call is one step of `tracer.iter`, and edits are ordinary in-place nnsight edits.
"""

from __future__ import annotations

import argparse

import nnsight
import torch

from nnsight_codi import load_model
from nnsight_codi.commands.common import step_arg
from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.errors import one_line_errors
from nnsight_codi.lens import logit_lens, top_tokens
from nnsight_codi.steps import resolve_step
from nnsight_codi.tracing.hooks import block_list


@one_line_errors("trace_latents")
def main(argv: list[str] | None = None) -> int:
    """Command line: trace clean and steered latent loops and print answers, lens and shifts per problem."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--step", type=step_arg, default=3,
                        help="step whose input is steered: an index or a name (latent3; default 3)")
    parser.add_argument("--coefficient", type=float, default=8.0)
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args(argv)

    codi = load_model(args.model)
    args.step = resolve_step(args.step, codi.num_latents)
    data = load_eval_dataset("synthetic", limit=args.n, seed=7, **synthetic_options(codi))
    prompts = codi.encode(list(data["question"]))
    steps = codi.num_latents + 2
    torch.manual_seed(0)
    direction = torch.randn(codi.hidden_size)
    direction = direction / direction.norm()

    def trace(coefficient: float):
        with codi.latent_generate(prompts) as tracer:
            per_step = nnsight.save([])
            for step in tracer.iter[:steps]:
                z = codi.step_input.output
                if step == args.step:
                    z[:, -1] += coefficient * direction
                per_step.append(torch.stack([block_list(codi)[i].output[:, -1] for i in range(codi.num_layers)], 1))
            answer_ids = tracer.result.save()
        return torch.stack(per_step, 1), codi.decode(answer_ids)   # [batch, step, layer, dim]

    clean, clean_answers = trace(0.0)
    steered, steered_answers = trace(args.coefficient)
    names = codi.step_names()
    print(f"{codi.num_latents} latents, {codi.num_layers} layers; steering {names[args.step]} by {args.coefficient}")
    for row, question in enumerate(data["question"]):
        ids, _ = top_tokens(logit_lens(codi, clean[row, :, -1]), k=1)
        lens = " ".join(f"{n}:{codi.tokenizer.decode([int(i)]).strip()}" for n, i in zip(names, ids[:, 0]))
        shift = (steered[row] - clean[row]).detach().norm(dim=-1).max(-1).values  # per step, max over layers
        print(f"\n{question}\n  gold {data['answer'][row]} | clean {clean_answers[row]!r} | steered {steered_answers[row]!r}")
        print(f"  logit lens (last layer): {lens}")
        print("  max |Δh| per step: " + " ".join(f"{n}:{float(s):.2f}" for n, s in zip(names, shift)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
