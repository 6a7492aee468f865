"""Activation patching and thought anchors on a CODI model.

1. Activation patching: for each held-out problem, a corrupted copy with its first operand changed; patch
   the residual stream at each (step, layer) — last position — from the clean run into the corrupted one;
   measure the clean answer's log-probability and whether the corrupted run now answers as the clean one.
2. Thought anchors: ablate each latent z_k (zero / reference mean / resampled from another problem);
   Δ log-probability of the model's own answer and Δ accuracy with paired CIs, beside the attention
   later steps pay to z_k.

    python runs/patching_study.py --out out/patching_study [--limit 200]
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnsight_codi.data.scoring import extract_gold  # noqa: E402


@dataclass
class Config:
    """The patching study (defaults: the tiny CODI, about a minute on a laptop CPU)."""

    model: str = "tiny"
    limit: int = 40
    seed: int = 1
    reference_limit: int = 100
    reference_seed: int = 2
    kinds: tuple[str, ...] = ("zero", "mean", "resampled")
    max_new_tokens: int = 16
    batch_size: int = 100
    device: str = "cpu"


def demo_config() -> Config:
    """The demo-size configuration (12 problems, 30 reference problems)."""
    return Config(limit=12, reference_limit=30)


def _saved(path: Path, config: dict) -> bool:
    import xarray as xr

    if not (path / "zarr.json").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return json.loads(xr.open_zarr(path, consolidated=False).attrs.get("config", "{}")) == config


def _save(ds, path: Path, config: dict) -> None:
    ds.attrs["config"] = json.dumps(config, sort_keys=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w", consolidated=False)


def run(config: Config, out, progress: bool = True) -> dict[str, Any]:
    """Run activation patching and thought anchors into `out`, analyse and report; return the results."""
    import numpy as np
    import xarray as xr

    from analyses import patching
    from nnsight_codi.activation_capture import CaptureConfig, run_capture
    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
    from nnsight_codi.interventions.anchors import activation_patching, thought_anchors
    from nnsight_codi.interventions.corrupt import corrupt_problem
    from nnsight_codi.loading import load_codi_model
    from nnsight_codi.reporting import write_study
    from nnsight_codi.store import open_store

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = asdict(config)
    codi = load_codi_model(config.model, config.device)
    k = codi.num_latents
    ds = load_eval_dataset("synthetic", limit=config.limit, seed=config.seed, **synthetic_options(codi))
    if not _saved(out / "patching.zarr", cfg):
        pairs = [(i, q, corrupt_problem(q, ops)) for i, (q, ops) in enumerate(zip(ds["question"], ds["operations"]))]
        pairs = [(i, q, c[0]) for i, q, c in pairs if c is not None]
        ap = activation_patching(codi, [p[1] for p in pairs], [p[2] for p in pairs], config.batch_size,
                                 max_new_tokens=config.max_new_tokens, progress=progress)
        ex = [str(ds["id"][p[0]]) for p in pairs]
        patch = xr.Dataset({"logprob": (("example", "step", "layer"), ap["logprob"]),
                            "recovered": (("example", "step", "layer"), ap["recovered"]),
                            "clean_logprob": ("example", ap["clean_logprob"]),
                            "corrupt_logprob": ("example", ap["corrupt_logprob"]),
                            "corrupt_recovered": ("example", ap["corrupt_recovered"]),
                            "clean_question": ("example", np.array([p[1] for p in pairs])),
                            "corrupt_question": ("example", np.array([p[2] for p in pairs]))},
                           coords={"example": ex, "step": ap["steps"], "layer": ap["layers"],
                                   "step_name": ("step", codi.step_names())})
        _save(patch, out / "patching.zarr", cfg)
    if not _saved(out / "anchors.zarr", cfg):
        ref = out / "reference.zarr"
        run_capture(ref, CaptureConfig(model=config.model, seed=config.reference_seed, limit=config.reference_limit,
                                       variables=("latent_input", "correct"), batch_size=config.batch_size,
                                       max_new_tokens=config.max_new_tokens, device=config.device),
                    codi=codi, progress=progress)
        golds = [extract_gold(a) for a in ds["answer"]]
        ta = thought_anchors(codi, list(ds["question"]), golds, open_store(ref)["latent_input"].values,
                             config.batch_size, max_new_tokens=config.max_new_tokens, kinds=config.kinds,
                             seed=config.seed, progress=progress)
        anchors = xr.Dataset({"logprob": (("example", "kind", "latent"), ta["logprob"]),
                              "correct": (("example", "kind", "latent"), ta["correct"]),
                              "base_logprob": ("example", ta["base_logprob"]),
                              "base_correct": ("example", ta["base_correct"]),
                              "attention": (("example", "latent"), ta["attention"])},
                             coords={"example": [str(i) for i in ds["id"]], "kind": ta["kinds"],
                                     "latent": ta["latents"]})
        _save(anchors, out / "anchors.zarr", cfg)
    results = patching.analyse(out, out)
    results["config"] = cfg
    results["num_latents"] = k
    write_study(out, patching, results, model=codi)
    return results


if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "out/patching_study", __doc__))
