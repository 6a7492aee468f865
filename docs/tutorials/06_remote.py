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
# # 6. Remote execution: `remote="local"` and NDIF
#
# [NDIF](https://nnsight.net) runs nnsight requests on models it hosts. It runs stock model
# wrappers only, so the remote path of the latent loop is an nnsight **session** with one trace per
# LM call: the loop and the projection run in the session body, the KV cache stays on the server,
# and hooks send back only what they record. `remote="local"` serialises each request exactly as
# NDIF would receive it and runs it in this process: no server, no network, the same answers.
#
# Everything in this tutorial runs offline on the tiny model; the end shows what changes for a real
# NDIF server.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import transformers

from nnsight_codi import load_model, run_loop
from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.interventions.steering import AddVector
from nnsight_codi.tracing.capture_hook import Capture
from nnsight_codi.tracing.remote import count_requests
from nnsight_codi.tracing.request_audit import audit_request

transformers.logging.disable_progress_bar()
OUT = Path("out/tutorials/06_remote")
OUT.mkdir(parents=True, exist_ok=True)

codi = load_model("tiny", device="cpu")
problems = load_eval_dataset("synthetic", limit=16, seed=1, **synthetic_options(codi))
prompts = codi.encode(problems["question"])

# %% [markdown]
# ## The same run, local and serialised
#
# `run_loop` takes `remote=`: `None` runs the traced driver in-process, `"local"` the NDIF-shaped
# session, serialised. A `Capture` hook records the residual stream at every step and layer; a
# steering hook edits latent 2. Answers and activations agree.

# %%
def run(remote):
    """Answers and captured records of one steered, captured run of the loop."""
    capture = Capture(variables=("hidden",), layers=range(codi.num_layers + 1), num_latents=codi.num_latents)
    steer = AddVector(torch.ones(codi.hidden_size), layer=1, steps=["latent2"], coef=0.5)
    return run_loop(codi, prompts, hooks=[steer, capture], max_new_tokens=16, remote=remote)


local_ids, local_records = run(None)
with count_requests(keep=True) as log:
    remote_ids, remote_records = run("local")
print("answers equal:", torch.equal(local_ids, remote_ids))
print("requests:", log.requests, "| bytes sent:", log.raw_bytes)
print(codi.decode(remote_ids)[:3])

# %% [markdown]
# The records are `(name, step, value)` tuples in the order the hooks visited their sites; the largest
# absolute difference between the two runs' recorded tensors:

# %%
def tensors(records):
    """The tensors among the records, in order."""
    return [r for rec in records for r in (rec if isinstance(rec, tuple) else (rec,)) if isinstance(r, torch.Tensor)]


diffs = [float((a.float() - b.float()).abs().max()) for a, b in zip(tensors(local_records), tensors(remote_records))]
print(len(diffs), "tensors compared; max |local − remote| =", max(diffs))

# %% [markdown]
# ## What a request carries
#
# NDIF's server runs each request under an import and builtins whitelist; `remote="local"`
# enforces none of it, so `audit_request` checks a serialised request against that whitelist: every
# global the pickle loads and every import of each function shipped by value.

# %%
report = audit_request(log.blobs[0])
print(report.summary())
print(len(report.modules), "modules imported by the request, e.g.", sorted(report.modules)[:5])

# %% [markdown]
# ## One request per batch
#
# One request per batch, whatever the number of LM calls (prompt, six latents, eot, answer tokens):
# the request carries the code, the inputs and the hooks' parameters once. Its size for 1, 4 and 16
# problems (mostly code; each problem adds its token ids):

# %%
sizes = {}
for n in (1, 4, 16):
    with count_requests() as log_n:
        run_loop(codi, codi.encode(problems["question"][:n]), max_new_tokens=16, remote="local")
    sizes[n] = log_n.raw_bytes[0]
print(sizes)

fig, ax = plt.subplots(figsize=(4.5, 3))
ax.plot(list(sizes), [b / 1e3 for b in sizes.values()], "o-")
ax.set_xlabel("problems in the batch")
ax.set_ylabel("request size (kB)")
ax.set_title("one NDIF-shaped request per batch")
ax.set_xscale("log", base=2)
fig.tight_layout()
fig.savefig(OUT / "request_size.png", dpi=120)
plt.show()

# %% [markdown]
# ## Pointing at a real NDIF
#
# Nothing below runs here (no network). On a machine that can reach an NDIF server:
#
# 1. Set the key and, for a self-hosted server, the host: `export NDIF_API_KEY=…`,
#    `export NDIF_HOST=https://…` (public NDIF is the default host).
# 2. Check the server, versions, the hosted model and that the requests pass its whitelist:
#    `nnsight-codi remote-check --model zen-E/CODI-gpt2 --lora-mode interventions --remote ndif`.
# 3. Run with `remote=True` in Python (`run_loop(codi, prompts, remote=True)`,
#    `CaptureConfig(remote=True)`), or `--remote ndif` on the command line.
#
# NDIF hosts base models, not CODI checkpoints: a reference CODI checkpoint runs there as its hosted
# base model plus LoRA applied as interventions (`load_model(spec, lora_mode="interventions")`,
# `--lora-mode interventions`), and a merged CODI LM you push to the hub runs on a server that
# deploys it (`--ndif-model REPO`). [CODI on NDIF](../ndif.md) has the details, costs and every
# failure's message; [Self-hosting NDIF](../ndif-self-host.md) runs the real server on loopback.
# Next: [writing a new study](07_new_study.ipynb).
