# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Quickstart: trace the latent loop, read a latent, edit one
#
# A CODI model answers a question after "thinking" in K continuous vectors: after the prompt and a
# `<bot>` token, the last layer's final-normed hidden state goes through a small projection (`prj`)
# and is fed back as the next input embedding, K times; then `<eot>` and the answer.
# `codi.latent_generate` runs that whole loop as **one nnsight tracing context**: every LM call is one
# *step* (`tracer.iter[i]` is step i: 0 = bot, 1..K = the latents, K+1 = eot, then answer tokens),
# and inside it you read and edit any module with plain nnsight idioms.
#
# This tutorial uses the shipped tiny CODI model (1M parameters, 4 layers, 6 latents; it loads
# offline in a second) on the CPU.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import nnsight
import torch
import transformers

from nnsight_codi import load_model
from nnsight_codi.lens import logit_lens, top_tokens

transformers.logging.disable_progress_bar()  # quieter notebook output
OUT = Path("out/tutorials/01_quickstart")     # figures are saved here as well as shown
OUT.mkdir(parents=True, exist_ok=True)

codi = load_model("tiny", device="cpu")       # device="cuda" on a GPU; the default is the CPU
print(codi.num_latents, "latents,", codi.num_layers, "layers, hidden size", codi.hidden_size)
print(codi.step_names())

# %% [markdown]
# ## Answer a question
#
# `codi.answer` takes texts. `latent_generate` takes a `PromptBatch` from `codi.encode` (token ids,
# left-padded, with `<bot>` appended) — not raw strings.

# %%
question = "Tom has 30 pens . He gets 5 more . He loses 3 pens . How many pens does Tom have now ?"
print(codi.answer([question]))
prompts = codi.encode([question])

# %% [markdown]
# ## Read: the residual stream at every step
#
# One trace over bot, the six latents and eot (8 steps). At each step we save the last position's
# output of every block. `codi.transformer.h[i]` is block i; stores and the command line call its
# output **layer i+1** (layer 0 is the embedding output). The KV cache after each step is
# `codi.output.cache`. The loop runs without autograd, so saved tensors carry no graph
# (`latent_generate(..., grad=True)` when you want gradients through it).

# %%
steps = codi.step_names()                     # ['bot', 'latent1', ..., 'latent6', 'eot']
with codi.latent_generate(prompts, num_latents=6) as tracer:
    hidden = nnsight.save([])                 # hidden[step][block]: [batch, dim]
    inputs = nnsight.save([])                 # what each step is fed (z_k at latent k)
    for step in tracer.iter[: len(steps)]:
        inputs.append(codi.step_input.output[:, -1].clone())
        hidden.append([codi.transformer.h[b].output[:, -1].clone() for b in range(codi.num_layers)])
        cache = codi.output.cache             # the live KV cache after this step (not needed here)
    answer_ids = tracer.result.save()

print(codi.decode(answer_ids))
h = torch.stack([torch.stack(per_block) for per_block in hidden])[:, :, 0]   # [step, block, dim]
print(tuple(h.shape))

# %% [markdown]
# ## The logit lens of each step
#
# `logit_lens` applies the final norm and the unembedding to a pre-norm hidden state. Here: the top
# token at every step × layer (layer b+1 = block b's output). Numbers show up at the latent steps,
# mostly at the early layers; the last layer's top token there is often an operator or `=`.

# %%
ids, probs = top_tokens(logit_lens(codi, h), k=1)            # [step, block, 1]
tokenizer = codi.tokenizer
for s, name in enumerate(steps):
    row = [f"{tokenizer.decode([int(ids[s, b, 0])]):>6} {float(probs[s, b, 0]):.2f}" for b in range(codi.num_layers)]
    print(f"{name:8}", " | ".join(row))

# %%
fig, ax = plt.subplots(figsize=(7, 3))
im = ax.imshow(probs[..., 0].T.numpy(), aspect="auto", origin="lower", cmap="viridis")
ax.set_xticks(range(len(steps)), steps, rotation=45)
ax.set_yticks(range(codi.num_layers), [f"layer {b + 1}" for b in range(codi.num_layers)])
for s in range(len(steps)):
    for b in range(codi.num_layers):
        ax.text(s, b, tokenizer.decode([int(ids[s, b, 0])]), ha="center", va="center", color="white", fontsize=8)
ax.set_title("logit lens: top-1 token and its probability")
fig.colorbar(im, ax=ax)
fig.tight_layout()
fig.savefig(OUT / "logit_lens.png", dpi=120)
plt.show()

# %% [markdown]
# ## Edit: replace a latent
#
# `codi.step_input.output` is what a step is fed; assigning to it changes the latent the model
# thinks with. Here each latent's input is zeroed in turn; on this one easy question the model
# answers the same whatever single latent is lost. Each `step` compares equal to its index and to
# its name: `step == 1` and `step == "latent1"` are the same test (a name that is no step raises).

# %%
def answer_with_zeroed(latent: int) -> str:
    """The answer when latent `latent`'s input vector is replaced by zeros."""
    with codi.latent_generate(prompts, num_latents=6) as tracer:
        for step in tracer.iter[: len(steps)]:
            if step == f"latent{latent}":
                codi.step_input.output[:, -1] = 0.0
        ids = tracer.result.save()
    return codi.decode(ids)[0]


for latent in range(1, 7):
    print(f"latent{latent} zeroed -> {answer_with_zeroed(latent)!r}")

# %% [markdown]
# ## Edit over a batch: how much does each latent matter?
#
# The same edit on 64 held-out synthetic problems, as accuracy per zeroed latent: latent 1 is the one
# that matters (the [thought-anchor results](../results/interventions.md) measure this on 200
# problems with confidence intervals).

# %%
from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.data.scoring import extract_gold, extract_prediction, is_correct

# problems drawn like the model's training data (its codi.json records how), from a seed never trained on
problems = load_eval_dataset("synthetic", limit=64, seed=1_000_003, **synthetic_options(codi))
batch = codi.encode(problems["question"])
golds = [extract_gold(a) for a in problems["answer"]]


def accuracy(zeroed: int | None) -> float:
    """Accuracy on the batch with latent `zeroed`'s input set to zero (None: unedited)."""
    with codi.latent_generate(batch, num_latents=6) as tracer:
        for step in tracer.iter[: len(steps)]:
            if step == zeroed:
                codi.step_input.output[:, -1] = 0.0
        ids = tracer.result.save()
    texts = codi.decode(ids)
    return sum(is_correct(extract_prediction(t), g) for t, g in zip(texts, golds)) / len(golds)


results = {"none": accuracy(None)} | {f"latent{k}": accuracy(k) for k in range(1, 7)}
print({k: round(v, 3) for k, v in results.items()})

# %%
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.bar(list(results), list(results.values()), color=["grey"] + ["tab:blue"] * 6)
ax.set_ylabel("accuracy (n=64)")
ax.set_ylim(0, 1)
ax.set_title("zeroing one latent's input")
fig.tight_layout()
fig.savefig(OUT / "zeroed_latents.png", dpi=120)
plt.show()

# %% [markdown]
# Next: [capture activations into a store and analyse them with xarray](02_capture_xarray.ipynb).
# The step table, hooks, forking and remote execution are in the
# [user guide](../guide/tracing.md); the pitfalls met above in [Gotchas](../gotchas.md).
