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
# # 3. Lenses: what do the latents say?
#
# A **logit lens** reads a hidden state as a distribution over the vocabulary:
# `unembed(final_norm(h))`. A **tuned lens** first applies a small learned affine translator per
# layer, trained so that each layer's read-out matches the model's final distribution. Here: the
# logit lens stored by a capture, the same lens recomputed offline from the store, whether the
# problem's intermediate values show at the latents (against a chance baseline), and a tuned lens
# trained on the latents.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import transformers

from nnsight_codi import load_model
from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.lens import store_lens
from nnsight_codi.lens.values import hits, other_problem, token_values
from nnsight_codi.store import open_store

transformers.logging.disable_progress_bar()
OUT = Path("out/tutorials/03_lenses")
OUT.mkdir(parents=True, exist_ok=True)

codi = load_model("tiny", device="cpu")
N, SEED = 64, 1_000_003
problems = load_eval_dataset("synthetic", limit=N, seed=SEED, **synthetic_options(codi))

# %% [markdown]
# ## Capture the logit lens
#
# `lens` stores the top-k read-outs per step × layer (`lens_top_ids`, `lens_top_probs`,
# `lens_entropy`); `unembed` stores the unembedding itself, so a lens can be recomputed from the
# store without the model. (CLI: `nnsight-codi capture --what hidden,lens,unembed,correct --lens-k 10`.)

# %%
config = CaptureConfig(model="tiny", seed=SEED, limit=N, batch_size=N, lens_k=10,
                       variables=("hidden", "lens", "unembed", "correct", "answer_gold"))
run_capture(OUT / "lens.zarr", config, codi=codi, progress=False)
ds = open_store(OUT / "lens.zarr")
print(ds.lens_top_ids.dims, ds.lens_top_ids.shape)

# %% [markdown]
# The top-5 tokens of the first problem at layer 1, step by step:

# %%
vocab = ds.token_string.values
print(problems[0]["question"], "| steps:", problems[0]["intermediates"])
for s, name in enumerate(ds.step_name.values):
    top = ds.lens_top_ids.isel(example=0, step=s).sel(layer=1).values[:5]
    print(f"{name:8}", " ".join(f"{vocab[t]!r}" for t in top))

# %% [markdown]
# ## The same lens, offline
#
# `store_lens` recomputes the read-outs from `hidden` and the stored unembedding with numpy alone.

# %%
offline = store_lens(ds, k=10)
same = (offline.lens_top_ids.values[..., 0] == ds.lens_top_ids.values[..., 0]).mean()
print(f"top-1 agreement with the stored lens: {same:.4f}")

# %% [markdown]
# ## Do the intermediate values show?
#
# For each problem, its intermediate results (e.g. `[35, 32]` for 30 + 5 − 3); a hit is one of them
# among the top-5 read-outs. Chance is the same score against *another* problem's values.

# %%
values = token_values(vocab)[ds.lens_top_ids.values]             # (example, step, layer, k) as numbers
targets = [set(map(float, p["intermediates"])) for p in problems]
hit = hits(values, targets, k=5).mean(0)                          # (step, layer)
chance = hits(values, other_problem(targets), k=5).mean(0)
latents = slice(1, codi.num_latents + 1)
k, layer = np.unravel_index(hit[latents].argmax(), hit[latents].shape)
print(f"best: latent{k + 1}, layer {layer}: hit rate {hit[latents][k, layer]:.2f} "
      f"(chance there {chance[latents][k, layer]:.2f})")

# %%
names = [str(n) for n in ds.step_name.values]
fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for ax, data, title in ((axes[0], hit, "intermediate value in top-5"), (axes[1], chance, "chance (another problem)")):
    im = ax.imshow(data.T, origin="lower", aspect="auto", vmin=0, vmax=max(0.01, hit.max()), cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45)
    ax.set_title(title)
axes[0].set_yticks(range(ds.sizes["layer"]), [f"layer {l}" for l in ds.layer.values])
fig.colorbar(im, ax=axes)
fig.savefig(OUT / "lens_hits.png", dpi=120, bbox_inches="tight")
plt.show()

# %% [markdown]
# ## A tuned lens on the latents
#
# `collect` gathers (hidden state, final distribution) pairs at the latent steps; `train_tuned_lens`
# trains the translators (tuned-lens's optimiser and file layout; a few steps here, the CLI default
# is up to 250: `nnsight-codi lens train --model tiny --data latents --out DIR`). `evaluate_lens`
# gives held-out KL to the final distribution per layer, for the logit and the tuned lens.

# %%
from nnsight_codi.lens.lens_training import TrainConfig, collect, evaluate_lens, train_tuned_lens

data = collect(codi, problems, "latents", progress=False)
train, held_out = data.split(0.25)
lens = train_tuned_lens(codi, train, TrainConfig(steps=60, batch_size=256), progress=False)
kl = evaluate_lens(codi, lens, held_out)
for row in kl:
    print(f"layer {row['layer']}: logit {row['kl_logit']:.2f} nats, tuned {row['kl_tuned']:.2f} nats")

# %%
layers = [r["layer"] for r in kl]
fig, ax = plt.subplots(figsize=(5, 3))
ax.bar(np.array(layers) - 0.2, [r["kl_logit"] for r in kl], width=0.4, label="logit lens")
ax.bar(np.array(layers) + 0.2, [r["kl_tuned"] for r in kl], width=0.4, label="tuned lens")
ax.set_xticks(layers, [f"layer {l}" for l in layers])
ax.set_ylabel("KL to final (nats)")
ax.set_title("held-out KL at the latent steps")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "tuned_lens_kl.png", dpi=120)
plt.show()

# %% [markdown]
# The full study (`python runs/lens_study.py`; 1,000 problems, tuned lenses trained on text, latents
# and one latent, probes, and a comparison with published claims) is in
# [Results: lenses](../results/lens.md); how numbers that BPE tokenizers split are scored is in the
# [user guide](../guide/lenses.md). Next: [steering and sweeps](04_steering_sweeps.ipynb).
