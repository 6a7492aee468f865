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
# # 2. Capture activations, analyse them with xarray
#
# `run_capture` streams activations of the latent loop into a **zarr store** (resumable: rerun the
# same call after an interruption and it finishes the missing examples). `open_store` opens it
# lazily as a labeled **xarray** dataset, so the analysis needs no model and no torch, and the store
# also opens with plain `xarray.open_zarr`.
#
# The command line does the same: `nnsight-codi capture --model tiny --limit 48 --out capture.zarr`.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import transformers
import xarray as xr

from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.store import open_store, select_correct, select_steps

transformers.logging.disable_progress_bar()
OUT = Path("out/tutorials/02_capture_xarray")
OUT.mkdir(parents=True, exist_ok=True)
STORE = OUT / "capture.zarr"

# %% [markdown]
# ## Capture
#
# 48 held-out synthetic problems (drawn like the model's training data), every layer's residual
# stream at every step (`hidden`), the vector fed at each latent step (`latent_input`), and the
# answers.

# %%
config = CaptureConfig(model="tiny", dataset="synthetic", seed=1_000_003, limit=48, batch_size=48,
                       variables=("hidden", "latent_input", "answer_pred", "answer_gold", "correct", "prompt_ids"))
summary = run_capture(STORE, config, progress=False)
print({k: summary[k] for k in ("examples", "written_now", "bytes")})

# %% [markdown]
# Running it again finds every example complete and does nothing; a different configuration would
# be refused with what differs.

# %%
again = run_capture(STORE, config, progress=False)
print(again["written_now"], "examples written on the second call;", again["examples"], "complete")

# %% [markdown]
# ## Open it as xarray

# %%
ds = open_store(STORE)
print(dict(ds.sizes))
print(sorted(ds.data_vars))
ds.hidden

# %% [markdown]
# `hidden` is `(example, step, layer, dim)`: layer 0 is the embedding output, layer l the output of
# block l-1 (`codi.transformer.h[l-1]` in a trace), layer L the last block's output before the final
# norm. Steps have names as well as indices (`step_name`), and `select_steps` takes either.

# %%
print(ds.hidden.dims, ds.hidden.shape)
print(list(ds.step_name.values))
print("accuracy:", float(ds.correct.mean()))
latent3 = select_steps(ds, "latent3")
print(latent3.hidden.dims, latent3.hidden.shape)

# %% [markdown]
# ## The residual stream's norm by step and layer
#
# Plain xarray: a reduction over `dim`, a mean over examples, computed lazily with dask and loaded at
# the end.

# %%
norm = np.sqrt((ds.hidden ** 2).sum("dim")).mean("example").compute()
fig, ax = plt.subplots(figsize=(6.5, 3))
norm.plot(ax=ax, x="step", y="layer", cmap="magma")
ax.set_xticks(range(ds.sizes["step"]), list(ds.step_name.values), rotation=45)
ax.set_title("mean ‖h‖ by step × layer (48 problems)")
fig.tight_layout()
fig.savefig(OUT / "hidden_norm.png", dpi=120)
plt.show()

# %% [markdown]
# ## How alike are the latents?
#
# Cosine similarity between the vectors fed at the six latent steps, averaged over problems. The
# tiny model's odd and even latents differ (its [attention results](../results/attention.md) show an
# odd/even alternation too).

# %%
z = select_steps(ds, [f"latent{k}" for k in range(1, 7)]).latent_input.compute()   # (example, step, dim)
unit = z / np.sqrt((z ** 2).sum("dim"))
cosine = xr.dot(unit, unit.rename(step="step2"), dim="dim").mean("example")
labels = [f"z{k}" for k in range(1, 7)]
fig, ax = plt.subplots(figsize=(4.2, 3.6))
im = ax.imshow(cosine.values, vmin=-1, vmax=1, cmap="RdBu_r")
ax.set_xticks(range(6), labels)
ax.set_yticks(range(6), labels)
for i in range(6):
    for j in range(6):
        ax.text(j, i, f"{float(cosine[i, j]):.2f}", ha="center", va="center", fontsize=7)
fig.colorbar(im, ax=ax)
ax.set_title("cosine between latent inputs")
fig.tight_layout()
fig.savefig(OUT / "latent_cosine.png", dpi=120)
plt.show()

# %% [markdown]
# ## Split by outcome
#
# `select_correct` keeps the examples answered right (or wrong). With so few wrong answers the
# difference below is noisy: the studies report bootstrap confidence intervals for such numbers.

# %%
right, wrong = select_correct(ds, True), select_correct(ds, False)
print(right.sizes["example"], "right,", wrong.sizes["example"], "wrong")
last = ds.sizes["layer"] - 1
for name, part in (("right", right), ("wrong", wrong)):
    if part.sizes["example"]:
        n = np.sqrt((part.hidden.sel(layer=last) ** 2).sum("dim")).mean("example").compute()
        print(name, np.round(n.values, 2))

# %% [markdown]
# ## Without this package
#
# The store is a plain zarr store: `xarray.open_zarr` reads it anywhere (`open_store` adds lazy
# chunking tuned to the store, the manifest's complete examples and the schema check).

# %%
plain = xr.open_zarr(STORE)
print(sorted(plain.data_vars))
print(sorted(plain.attrs))                     # provenance: model, configuration, versions, command, time

# %% [markdown]
# Next: [lenses](03_lenses.ipynb). The store's variables and their dimensions are listed in the
# [user guide](../guide/stores.md).
