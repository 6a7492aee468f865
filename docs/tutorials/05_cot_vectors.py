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
# # 5. Chain-of-thought vectors on an instruct LM
#
# A chain-of-thought vector ([Zhang & Viteri](https://arxiv.org/abs/2409.14026)) makes an instruct
# model reason without being asked to. Ask every question twice through the chat template — "think
# step by step" and "answer immediately" — generate a continuation for each, average each layer's
# residual stream over the generated tokens, and take v_l = mean(CoT) − mean(direct). Adding
# `c × v_l` to layer l either once, on the prompt forward (**single**), or on every forward
# (**continuous**) is the steering condition.
#
# The shipped `tiny-instruct` model (v3: a 1M-parameter GPT-2 chat model trained on the same
# arithmetic problems; `tiny-instruct-v3` is the same model by its versioned name) writes
# `<< a op b = c >> … The answer is : N` when asked for steps and `The answer is : N` when asked
# for the answer alone.

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import transformers

from nnsight_codi import load_model
from nnsight_codi.cot import ExtractConfig, evaluate_conditions, extract_vectors, load_vectors, parse_condition
from nnsight_codi.cot.questions import load_questions
from nnsight_codi.data.eval_datasets import synthetic_options

transformers.logging.disable_progress_bar()
OUT = Path("out/tutorials/05_cot_vectors")
OUT.mkdir(parents=True, exist_ok=True)

model = load_model("tiny-instruct", device="cpu")        # a plain HF causal LM wrapped by nnsight
options = synthetic_options(model)                        # the problems it was trained on (instruct.json)

# %% [markdown]
# ## Extract the vectors
#
# 32 training problems, each asked both ways, continuations sampled with a seed. The store holds
# each question's difference per layer and the mean: `load_vectors` gives `(layer, dim)`, layer 0 =
# the embedding output, layer l = block l-1's output. (CLI: `nnsight-codi cot-vectors extract`.)

# %%
summary = extract_vectors(OUT / "vectors.zarr", ExtractConfig(model="tiny-instruct", limit=32, synthetic=options),
                          model=model, progress=False)
vectors = load_vectors(OUT / "vectors.zarr")
print(vectors.shape, "norms by layer:", np.round(np.linalg.norm(vectors, axis=-1), 2))

# %% [markdown]
# ## Steer the direct prompt
#
# 48 test problems under the plain prompts and two steering conditions at the last block's output
# (layer 4), the single injection at a large and the continuous one at a small coefficient. The
# reasoning rate is the share of outputs that write a chain (`<< … >>`).

# %%
test = load_questions("synthetic", split="test", limit=48, seed=1, **options)
conditions = [parse_condition(c) for c in ("direct", "cot", "single:4:8", "continuous:4:0.5")]
results = evaluate_conditions(model, test, conditions, vectors, max_new_tokens=48, progress=False)
rows = [r.summary() for r in results]
for r, res in zip(rows, results):
    print(f"{res.condition.label():18} accuracy {r['accuracy']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
          f"  chains {r['reasoning_rate']:.2f}")

# %%
direct = results[0]
steered = results[2]
print("direct prompt: ", repr(direct.texts[0]))
print("single:4:8 →   ", repr(steered.texts[0]))

# %%
labels = [res.condition.label() for res in results]
acc = np.array([r["accuracy"] for r in rows])
err = np.array([[r["accuracy"] - r["ci_low"], r["ci_high"] - r["accuracy"]] for r in rows]).T
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(labels, acc, yerr=err, capsize=3, color=["grey", "grey", "tab:green", "tab:orange"], label="accuracy")
ax.plot(labels, [r["reasoning_rate"] for r in rows], "kD", label="share writing a chain")
ax.set_ylim(0, 1.05)
ax.set_title("tiny-instruct: CoT vector at layer 4 (n=48)")
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(OUT / "conditions.png", dpi=120)
plt.show()

# %% [markdown]
# On the tiny model a single injection at the last block makes the direct prompt write the CoT
# prompt's chain; continuous injection, added to every generated token, breaks the numbers. The
# measured study (grid on a dev split, 300 test problems, three model versions, a random-direction
# control) is in [Results: CoT vectors](../results/cot-vectors.md); a grid and lm-eval with a
# steered model are in the [user guide](../guide/cot-vectors.md). Next:
# [remote execution](06_remote.ipynb).
