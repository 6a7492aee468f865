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

import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    return Config(limit=12, reference_limit=30)


def _saved(path: Path, config: dict) -> bool:
    import json

    import xarray as xr

    if not (path / "zarr.json").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return json.loads(xr.open_zarr(path, consolidated=False).attrs.get("config", "{}")) == config


def _save(ds, path: Path, config: dict) -> None:
    import json

    ds.attrs["config"] = json.dumps(config, sort_keys=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w", consolidated=False)


def headline(results: dict[str, Any]) -> list[str]:
    lines = []
    a = results.get("anchors_summary")
    if a:
        table = results["anchors"]
        worst = min(table, key=lambda r: r["delta_accuracy"])
        lines.append(f"Thought anchors (n={a['n']}, accuracy {100 * a['base_accuracy']:.1f}%): ablating latent "
                     f"{worst['latent']} ({worst['kind']}) changes accuracy by {100 * worst['delta_accuracy']:+.1f} pts "
                     f"[{100 * worst['dacc_low']:+.1f}, {100 * worst['dacc_high']:+.1f}].")
        lines.append(f"Most important latent by Δ log-prob: {a['most_important_latent']}; most attended: "
                     f"{a['most_attended_latent']} (Spearman importance vs attention across {a['spearman_n_latents']} "
                     f"latents {a['spearman_importance_attention']:+.2f} [{a['spearman_ci_low']:+.2f}, "
                     f"{a['spearman_ci_high']:+.2f}], bootstrap over n={a['n']} problems).")
        later = [r for r in table if r["latent"] >= 2]
        if later:
            lines.append("Ablating one of latents 2..K moves accuracy by at most " + ", ".join(
                f"{100 * max(abs(r['delta_accuracy']) for r in later if r['kind'] == kind):.1f} pts ({kind})"
                for kind in dict.fromkeys(r["kind"] for r in later)) + ".")
    p = results.get("patching_summary")
    if p:
        b = p["best_cell"]
        lines.append(f"Activation patching (n={p['n']}): corrupted runs give the clean answer {100 * p['corrupt_recovered']:.0f}% "
                     f"of the time; the best single (step, layer) patch is {b['step_name']} layer {int(b['layer'])}: "
                     f"Δ log p {b['delta_logprob']:+.2f} [{b['dlp_low']:+.2f}, {b['dlp_high']:+.2f}], recovered "
                     f"{100 * b['recovered']:.0f}%.")
    return lines[:5]


def run(config: Config, out, progress: bool = True) -> dict[str, Any]:
    import numpy as np
    import xarray as xr

    from analyses.patching import analyze, compare_with_source
    from nnsight_codi.capture import CaptureConfig, run_capture
    from nnsight_codi.loading import load_codi_model
    from nnsight_codi.data.scoring import extract_gold
    from nnsight_codi.data.sources import load_eval_dataset, synthetic_options
    from nnsight_codi.interventions.anchors import activation_patching, thought_anchors
    from nnsight_codi.interventions.corrupt import corrupt_problem
    from nnsight_codi.reporting import comparison_section, markdown_table, write_report, write_results
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
    results = analyze(out, out)
    results["config"] = cfg
    results["num_latents"] = k
    results["headline"] = headline(results)
    results["compared_with_source"] = compare_with_source(results)
    write_results(out, results)
    cols = ["kind", "latent", "delta_accuracy", "dacc_low", "dacc_high", "delta_logprob", "dlp_low", "dlp_high",
            "attention", "n"]
    write_report(out, "Patching study: activation patching and thought anchors", [
        ("Headline", "\n".join(f"- {h}" for h in results["headline"])),
        ("Thought anchors", markdown_table([{c: r[c] for c in cols} for r in results.get("anchors", [])])),
        ("Activation patching", "Patch = the residual stream at the step's last position (bot at step 0), "
                                "clean → corrupted. Δ log p = log p(clean answer | patched corrupted) − log p(clean "
                                "answer | corrupted), paired bootstrap CI over problems.\n\n" + markdown_table(
                                    sorted(results.get("patching", []), key=lambda r: -r["delta_logprob"])[:12])),
    ], figures=results["figures"], config=cfg, closing=[comparison_section(results["compared_with_source"])])
    return results


if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "out/patching_study", __doc__))
