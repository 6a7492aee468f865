"""Sweep stores: every condition × example of a sweep in one store, read back with a `condition` dim.

`interventions.sweep.run_sweep` writes `DIR/sweep.zarr` (a `StoreWriter` store, one row per
(condition, example)); `open_sweep(DIR)` reshapes it to `(condition, example)` and `condition_table`
gives accuracy and the paired-bootstrap difference from `none` per condition (the steering study's
main table). Torch-free: the analyses read sweeps offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..stats import bootstrap_ci, paired_bootstrap_diff, significant
from .reader import open_store

SWEEP_STORE = "sweep.zarr"
SWEEP_VARIABLES = ["answer_pred", "answer_gold", "correct"]


def open_sweep(path: str | Path):
    """The sweep as an `xarray.Dataset` with dims `(condition, example)` (NaN / False where not yet run).

    `path` is the sweep directory or its `sweep.zarr`. Variables: `correct`, `answer_pred`,
    `answer_gold`, `complete`; coords `condition` (names), `mode`; attrs `conditions` (each one's parameters).
    """
    path = Path(path)
    if (path / SWEEP_STORE).exists():
        path = path / SWEEP_STORE
    ds = open_store(path, complete_only=False).load()
    cfg = ds.attrs.get("config", {})
    if isinstance(cfg, str):
        cfg = json.loads(cfg)
    conds = cfg.get("interventions") or ds.attrs.get("interventions")
    examples = cfg.get("examples")
    if not conds or not examples:
        raise ValueError(f"{path} is not a sweep store (no conditions in its config)")
    nc, ne = len(conds), len(examples)
    data = {}
    for name in SWEEP_VARIABLES + ["complete"]:
        arr = ds[name].values.reshape(nc, ne)
        data[name] = (("condition", "example"), arr)
    names = [c["name"] for c in conds]
    out = xr.Dataset(data, coords={"condition": names, "example": examples,
                                   "mode": ("condition", [c["mode"] for c in conds])})
    out["correct"] = out["correct"].where(out["complete"])
    out.attrs.update({"conditions": conds, "num_latents": cfg.get("num_latents"), "model_id": cfg.get("model_id"),
                      "store_path": str(path)})
    return out


def condition_table(ds, baseline: str = "none", seed: int = 0):
    """Per condition: accuracy (bootstrap CI) and its paired difference from `baseline` (CI, significance).

    `ds` is `open_sweep(...)` (only examples every condition finished are used). Returns a pandas
    DataFrame with one row per condition and the condition's parameters as columns.
    """
    correct = ds["correct"].values.astype(np.float64)                  # condition, example (NaN = not run)
    keep = ~np.isnan(correct).any(axis=0)
    correct = correct[:, keep]
    names = [str(c) for c in ds["condition"].values]
    if baseline not in names:
        raise ValueError(f"baseline condition {baseline!r} not in the sweep")
    base = correct[names.index(baseline)]
    params = {c["name"]: c for c in ds.attrs.get("conditions", [])}
    rows = []
    for i, name in enumerate(names):
        acc = bootstrap_ci(correct[i], seed=seed)
        diff = paired_bootstrap_diff(correct[i], base, seed=seed)
        p = params.get(name, {})
        pair = p.get("pair")
        rows.append({"condition": name, "mode": p.get("mode", str(ds["mode"].values[i])),
                     "pair_a": pair[0] if pair else None, "pair_b": pair[1] if pair else None,
                     "coef": p.get("coef") if p.get("mode") == "hidden" else (p.get("coef_k") if p.get("mode") == "kv" else None),
                     "coef_k": p.get("coef_k"), "coef_v": p.get("coef_v"), "patch": p.get("patch"),
                     "accuracy": acc.value, "acc_low": acc.low, "acc_high": acc.high,
                     "delta": diff.value, "delta_low": diff.low, "delta_high": diff.high,
                     "significant": significant(diff) and name != baseline, "n": acc.n})
    return pd.DataFrame(rows)
