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
# # 7. Writing a new study
#
# A **study** is anything with a `Config` dataclass, `demo_config() -> Config` and
# `run(config, out, progress=True) -> dict`; `run` writes `results.json`, `figures/*.png` and
# `report.md` under `out` and returns the results with a `headline` list. The built-in studies are
# the `runs/` modules (each with its offline analysis in `analyses/`). A study written anywhere — a
# notebook, a script, another package — joins `nnsight-codi demo` through
# `nnsight_codi.studies.register_study`, or, for an installed package, an entry point.
#
# This one asks: how large is the vector fed at each latent step, and does it differ between
# problems the model gets right and wrong?

# %%
import dataclasses
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import transformers
from IPython.display import Image, display

from nnsight_codi.reporting import markdown_table, save_figure, write_study
from nnsight_codi.stats import bootstrap_ci
from nnsight_codi.store import open_store

transformers.logging.disable_progress_bar()
OUT = Path("out/tutorials/07_new_study")

# %% [markdown]
# ## The analysis: from the store only
#
# Keep the analysis free of torch and the model: it reads the store, so it can be rerun offline on
# any capture. The names below are the study template every built-in analysis follows (`TITLE`,
# `analyse`, `headline`, `report_sections`, `compare_with_source`); `write_study` turns them into
# `results.json` and `report.md`, with the run's provenance (versions, commit, model fingerprint).

# %%
TITLE = "Latent input norms"


def analyse(store, out) -> dict:
    """Per latent step: the mean norm of the vector fed there, for right and wrong answers; a figure."""
    ds = open_store(store)
    names = [str(s) for s in ds.step_name.values]
    latents = [i for i, s in enumerate(names) if s.startswith("latent")]
    norms = np.linalg.norm(ds.latent_input.values[:, latents], axis=-1)       # (example, latent)
    correct = ds.correct.values.astype(bool)
    fig, ax = plt.subplots(figsize=(5, 3))
    for mask, label in ((correct, "right"), (~correct, "wrong")):
        if mask.any():
            ax.plot(range(1, len(latents) + 1), norms[mask].mean(0), "o-", label=f"{label} (n={mask.sum()})")
    ax.set_xlabel("latent")
    ax.set_ylabel("mean ‖z_k‖")
    ax.legend()
    figure = save_figure(fig, out, "latent_norms")
    return {"latents": [names[i] for i in latents], "norm": norms.mean(0).tolist(),
            "accuracy": bootstrap_ci(correct.astype(float)).as_dict(), "figures": [str(figure)]}


def headline(results: dict) -> list[str]:
    """One line per finding."""
    a = results["accuracy"]
    k = int(np.argmax(results["norm"]))
    return [f"accuracy {a['value']:.1%} [{a['ci_low']:.1%}, {a['ci_high']:.1%}] (n={a['n']})",
            f"largest latent input: {results['latents'][k]} (mean norm {results['norm'][k]:.2f})"]


def report_sections(results: dict) -> list[tuple[str, str]]:
    """The report's sections."""
    rows = [{"latent": s, "mean norm": n} for s, n in zip(results["latents"], results["norm"])]
    return [("Headline", "\n".join(f"- {h}" for h in results["headline"])), ("Norm per latent", markdown_table(rows))]


def compare_with_source(results: dict) -> list:
    """No published claim to compare with."""
    return []


analysis = types.SimpleNamespace(TITLE=TITLE, headline=headline, report_sections=report_sections,
                                 compare_with_source=compare_with_source)

# %% [markdown]
# ## The study: capture, then analyse

# %%
@dataclasses.dataclass
class Config:
    """What a run of the study measures."""

    model: str = "tiny"
    limit: int = 200
    seed: int = 1_000_003


def demo_config() -> Config:
    """The demo's size: small enough for seconds on a CPU."""
    return Config(limit=32)


def run(config: Config, out, progress: bool = True) -> dict:
    """Capture the latent inputs and answers, analyse the store, write the study's files."""
    from nnsight_codi.activation_capture import CaptureConfig, run_capture

    out = Path(out)
    store = out / "store.zarr"
    run_capture(store, CaptureConfig(model=config.model, seed=config.seed, limit=config.limit, batch_size=32,
                                     variables=("latent_input", "correct")), progress=progress)
    results = analyse(store, out)
    results["config"] = dataclasses.asdict(config)
    write_study(out, analysis, results)
    return results


# %% [markdown]
# Run it directly:

# %%
results = run(demo_config(), OUT / "direct", progress=False)
print(results["headline"])
display(Image(filename=results["figures"][0]))

# %% [markdown]
# The report it wrote (`report.md`), its first lines:

# %%
report = (OUT / "direct" / "report.md").read_text()
print("\n".join(report.splitlines()[:32]))

# %% [markdown]
# ## Register it with the demo
#
# `register_study(name, definition)` takes a module or any object with `demo_config` and `run`
# (the title defaults to the first line of its docstring). The demo then runs it like a built-in
# study: `nnsight-codi demo --studies latent_norms` from Python (`nnsight_codi.cli.main`), or
# `run_study` as below, which catches a failing study and reports it instead of stopping the demo.

# %%
from nnsight_codi.studies import get_study, register_study, run_study, select_studies, unregister_study

study = types.SimpleNamespace(Config=Config, demo_config=demo_config, run=run,
                              __doc__="Latent input norms of right and wrong answers.")
register_study("latent_norms", study, expected_seconds=10)
print([s.name for s in select_studies("all")])
outcome = run_study(get_study("latent_norms"), OUT / "demo" / "latent_norms", progress=False)
print(outcome.status, f"{outcome.seconds:.1f} s", outcome.headline)
unregister_study("latent_norms")

# %% [markdown]
# ## Ship it in a package
#
# Put `Config`, `demo_config`, `run` (and the analysis) in a module of your own package, say
# `my_package/latent_norms.py`, and declare it in that package's `pyproject.toml`:
#
# ```toml
# [project.entry-points."nnsight_codi.studies"]
# latent_norms = "my_package.latent_norms"        # a module, or "my_package.latent_norms:STUDY"
# ```
#
# Once the package is installed, `nnsight-codi demo` lists and runs `latent_norms` with the
# built-in studies, with no import by the user. The built-in studies (`runs/*.py` with
# `analyses/*.py`) follow the same shape; see [Architecture](../guide/architecture.md).
