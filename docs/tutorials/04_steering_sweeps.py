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
# # 4. Steering and sweeps
#
# Every intervention is a **step hook** of the one latent loop (`run_loop`): `AddVector` adds a
# vector to the residual stream at chosen steps and a layer, `KVSteer` edits the KV cache after the
# last latent, `PatchLatent` replaces a latent's input. Hooks compose with each other and with
# `Capture`. A **sweep** runs a grid of such conditions over a dataset into one resumable store,
# computing the prefix the conditions share only once.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers

from nnsight_codi import load_model, run_loop
from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.data.scoring import extract_gold, extract_prediction, is_correct
from nnsight_codi.interventions.steering import AddVector
from nnsight_codi.store import open_store, select_steps

transformers.logging.disable_progress_bar()
OUT = Path("out/tutorials/04_steering_sweeps")
OUT.mkdir(parents=True, exist_ok=True)

codi = load_model("tiny", device="cpu")
problems = load_eval_dataset("synthetic", limit=48, seed=1, **synthetic_options(codi))
prompts = codi.encode(problems["question"])
golds = [extract_gold(a) for a in problems["answer"]]


def accuracy(hooks=()) -> float:
    """Accuracy on the 48 problems with `hooks` attached to the latent loop."""
    ids, _records = run_loop(codi, prompts, hooks=list(hooks), max_new_tokens=16)
    texts = codi.decode(ids)
    return float(np.mean([is_correct(extract_prediction(t), g) for t, g in zip(texts, golds)]))


print("unsteered accuracy:", accuracy())

# %% [markdown]
# ## A steering vector from a reference capture
#
# The mean residual stream at latent 1 minus the mean at latent 6, at layer 1, over 64 *other*
# problems (seed 2): the ordered-pair difference the steering study uses.

# %%
run_capture(OUT / "reference.zarr", CaptureConfig(model="tiny", seed=2, limit=64, batch_size=64,
                                                  variables=("hidden", "correct")), codi=codi, progress=False)
ref = open_store(OUT / "reference.zarr")
layer = 1
mean = {k: select_steps(ref, f"latent{k}").hidden.sel(layer=layer).mean("example").values for k in (1, 6)}
vector = torch.tensor(mean[1] - mean[6])
print("vector norm:", float(vector.norm()))

# %% [markdown]
# ## Steer latent 1 with it, against a random direction of the same norm
#
# `AddVector(vector, layer, steps, coef)` adds `coef × vector` at the last position of each listed
# step (names or indices). A random direction of the same norm is the control.

# %%
generator = torch.Generator().manual_seed(0)
random_dir = torch.randn(codi.hidden_size, generator=generator)
random_dir = random_dir / random_dir.norm() * vector.norm()
coefs = [-4, -2, 0, 2, 4]
steered = [accuracy([AddVector(vector, layer=layer, steps=["latent1"], coef=c)]) for c in coefs]
control = [accuracy([AddVector(random_dir, layer=layer, steps=["latent1"], coef=c)]) for c in coefs]
print("steered:", np.round(steered, 3))
print("random: ", np.round(control, 3))

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(coefs, steered, "o-", label="latent1 − latent6 vector")
ax.plot(coefs, control, "s--", label="random direction, same norm")
ax.set_xlabel("coefficient")
ax.set_ylabel("accuracy (n=48)")
ax.set_ylim(0, 1.05)
ax.set_title("hidden steering at latent 1, layer 1")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "steering_curve.png", dpi=120)
plt.show()

# %% [markdown]
# ## A sweep
#
# `SweepConfig` describes a grid: modes (`hidden`, `kv`) × ordered latent pairs × coefficients,
# plus patch baselines (`random`, `mean`, `zero` replacing the last latent). `run_sweep` computes
# the reference vectors, runs every condition on the same problems into `sweep.zarr` (resumable),
# and `condition_table` gives accuracy and the paired difference from the unsteered run with
# bootstrap CIs. (CLI: `nnsight-codi sweep CONFIG.json --out DIR`, which also writes `table.csv`.)

# %%
from nnsight_codi.interventions.steering_sweep import SweepConfig, run_sweep
from nnsight_codi.store.sweep_store import condition_table, open_sweep

config = SweepConfig(model="tiny", limit=48, reference_limit=48, batch_size=48, max_new_tokens=16,
                     modes=["hidden", "kv"], pairs=[[1, 6]], coefs=[-2.0, 2.0], baselines=["zero", "mean"])
summary = run_sweep(config, OUT / "sweep", codi=codi, progress=False)
table = condition_table(open_sweep(OUT / "sweep"))
print(table[["condition", "accuracy", "delta", "delta_low", "delta_high", "significant"]].to_string(index=False))

# %%
rows = table[table["condition"] != "none"]
fig, ax = plt.subplots(figsize=(6, 3))
y = np.arange(len(rows))
ax.errorbar(rows["delta"], y, xerr=[rows["delta"] - rows["delta_low"], rows["delta_high"] - rows["delta"]],
            fmt="o", capsize=3)
ax.axvline(0, color="grey", lw=1)
ax.set_yticks(y, rows["condition"])
ax.set_xlabel("Δ accuracy vs unsteered (95% CI)")
ax.set_title("sweep: 48 problems")
fig.tight_layout()
fig.savefig(OUT / "sweep_deltas.png", dpi=120)
plt.show()

# %% [markdown]
# The matched-sites steering study (253 conditions × 1,000 problems) and thought anchors are in
# [Results: interventions](../results/interventions.md); the hooks and condition names in the
# [user guide](../guide/interventions.md). Next: [CoT vectors on an instruct LM](05_cot_vectors.ipynb).
