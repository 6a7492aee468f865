"""A resumable sweep: every condition × example in one store, read back with a `condition` dim.

`SweepConfig` (a JSON/YAML/TOML file for `nnsight-codi sweep CONFIG --out DIR`) expands to
conditions: the unsteered baseline `none`, every mode × ordered latent pair × coefficient
(hidden: `coefs`; kv: `kv_coefs` pairs `[coef_k, coef_v]`, default `[c, c]` for each of `coefs`), the
patch baselines (random / mean / zero at `patch_at`; `pause`: the pause control on every latent) and any explicit `conditions`. Steering
vectors come from `vectors` (a vector store or capture store) or from a reference capture of
held-out problems (`reference_seed`, written to `DIR/reference.zarr`).

Each (condition, example) is one row of `DIR/sweep.zarr` (a `StoreWriter` store: atomic writes and
a manifest), so a sweep killed at any point and started again runs only what is missing, and no
condition is lost or duplicated. Example batches run outside, conditions inside, so a stopped sweep
holds every condition on the same examples. Within a batch the conditions run as branches of one
unsteered trunk (`conditions.run_conditions`): the prompt and the latents they share are computed
once, and each condition continues from where it first differs (`fork: false` re-runs each whole;
the store is the same either way). `nnsight_codi.store.sweep_store.open_sweep(DIR)` reshapes it to
`(condition, example)`; `condition_table` there gives accuracy and the paired-bootstrap difference from
`none` per condition (both torch-free, for the analyses).

Example:
    >>> cfg = SweepConfig(pairs=[[1, 2]], coefs=[1.0], baselines=["zero"])
    >>> [c.name for c in expand_conditions(cfg, num_latents=2)]
    ['none', 'hidden:1-2:c+1+x', 'kv:1-2:k+1,v+1', 'patch:zero']
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ..activation_capture import CaptureConfig, run_capture
from ..config_cli import config_from_dict
from ..data.scoring import extract_gold
from ..loading import load_codi_model
from ..models.fingerprint import WEIGHTS_KEY, model_weights
from ..runspec import run_spec
from ..steps import parse_step, resolve_step
from ..store import StoreWriter, open_store
from ..store.sweep_store import SWEEP_STORE, SWEEP_VARIABLES
from ..store.vector_store import open_vectors, save_vectors, vectors_from_store
from ..tracing.loop import check_masking
from .conditions import (
    MODES,
    PAUSE,
    Condition,
    ModelShape,
    Resources,
    check_condition,
    run_conditions,
    score,
    validate_conditions,
)
from .patching import PATCH_KINDS
from .steering_vectors import difference_lens

if TYPE_CHECKING:
    from ..tracing.codi_model import CodiModel


@dataclass
class SweepConfig(run_spec(limit=100, batch_size=64)):
    """A sweep's grid and run options (and the run: `runspec.RunSpec`; every field may appear in the CONFIG file)."""

    num_latents: int | None = None
    max_new_tokens: int = 64
    masking: str = "exact"
    dtype: str = "float32"
    base: str | None = None
    remote: Any = None
    vectors: str | None = None
    reference_limit: int = 200
    reference_seed: int = 2
    modes: list[str] = field(default_factory=lambda: ["hidden", "kv"])
    pairs: Any = "all"
    coefs: list[float] = field(default_factory=lambda: [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0])
    kv_coefs: list[list[float]] | None = None
    at: int | str | None = None
    layer: int | None = None
    extra_latent_step: bool = True
    blocks: list[int] | None = None
    positions: str = "latents"
    baselines: list[str] = field(default_factory=lambda: ["random", "mean", "zero"])
    patch_at: int | str | None = None
    conditions: list[dict] = field(default_factory=list)
    fork: bool = True

    @classmethod
    def load(cls, path: str | Path) -> SweepConfig:
        """Read a `.json`, `.yaml`/`.yml` or `.toml` file; unknown keys are an error."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sweep config {path} not found")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            elif path.suffix == ".toml":
                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except Exception as err:
            raise ValueError(f"cannot parse sweep config {path}: {err}") from err
        return cls.from_dict(data or {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        cfg = config_from_dict(cls, data, "sweep config")
        cfg.check()
        return cfg

    def check(self) -> None:
        bad = [m for m in self.modes if m not in ("hidden", "kv")]
        if bad:
            raise ValueError(f"unknown sweep mode(s) {bad}: use hidden and/or kv (patch baselines go in `baselines`)")
        bad = [b for b in self.baselines if b not in (*PATCH_KINDS, PAUSE)]
        if bad:
            raise ValueError(f"unknown baseline(s) {bad}: use {', '.join((*PATCH_KINDS, PAUSE))}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        for step in (self.at, self.patch_at):  # names' form now; their range once K is known
            if step is not None:
                parse_step(step)
        if isinstance(self.pairs, list):
            for pair in self.pairs:
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    raise ValueError(f"pairs must be 'all' or a list of [A, B], got {self.pairs!r}")
                for step in pair:
                    parse_step(step)

    def fingerprint(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for volatile in ("device", "batch_size", "remote", "base", "fork"):
            data.pop(volatile)
        return data


def _pairs(cfg: SweepConfig, num_latents: int) -> list[tuple[int, int]]:
    if cfg.pairs == "all":
        return [(a, b) for a in range(1, num_latents + 1) for b in range(1, num_latents + 1) if a != b]
    if isinstance(cfg.pairs, str):
        raise ValueError(f"pairs must be 'all' or a list of [A, B], got {cfg.pairs!r}")
    return [(resolve_step(a, num_latents), resolve_step(b, num_latents)) for a, b in cfg.pairs]


def expand_conditions(cfg: SweepConfig, num_latents: int) -> list[Condition]:
    """Every condition of the grid, `none` first."""
    out = [Condition("none")]
    pairs = _pairs(cfg, num_latents)
    kv_coefs = cfg.kv_coefs if cfg.kv_coefs is not None else [[c, c] for c in cfg.coefs]
    for mode in cfg.modes:
        for pair in pairs:
            if mode == "hidden":
                out += [Condition("hidden", pair=pair, coef=float(c), at=cfg.at, layer=cfg.layer,
                                  extra_latent_step=cfg.extra_latent_step) for c in cfg.coefs]
            else:
                out += [Condition("kv", pair=pair, coef_k=float(ck), coef_v=float(cv),
                                  blocks=None if cfg.blocks is None else tuple(cfg.blocks), positions=cfg.positions)
                        for ck, cv in kv_coefs]
    out += [Condition("patch", patch=kind, at=cfg.patch_at) for kind in cfg.baselines]
    out += [Condition.from_dict(d) for d in cfg.conditions]
    out = [c.resolve(num_latents) for c in out]  # step names → indices (the condition names use indices)
    for c in out:
        if c.mode not in MODES:
            raise ValueError(f"unknown mode {c.mode!r}: use one of {', '.join(MODES)}")
    return out


def load_dataset_for(codi: CodiModel | None, cfg, seed: int, limit: int | None, dataset: str | None = None):
    """The evaluation problems of `dataset` (default `cfg.dataset`); synthetic ones from the model's distribution."""
    from ..data.eval_datasets import load_eval_dataset, synthetic_options

    dataset = dataset or cfg.dataset
    if dataset == "synthetic":
        return load_eval_dataset("synthetic", limit=limit, seed=seed, **synthetic_options(codi))
    return load_eval_dataset(dataset, split=cfg.split, limit=limit, seed=seed)


def reference_vectors(codi: CodiModel, cfg, out: Path, progress: bool = True):
    """The vector set of a sweep: `cfg.vectors`, or a reference capture (hidden, latent_input, kv) → vectors."""
    if cfg.vectors:
        return open_vectors(cfg.vectors)
    if cfg.dataset == "synthetic" and cfg.reference_seed == cfg.seed:
        raise ValueError("reference_seed must differ from seed (the vectors must come from held-out problems)")
    ref = out / "reference.zarr"
    run_capture(ref, CaptureConfig(model=str(cfg.model), dataset=cfg.dataset, split=cfg.split, seed=cfg.reference_seed,
                                   limit=cfg.reference_limit, num_latents=cfg.num_latents,
                                   variables=("hidden", "latent_input", "kv", "correct"),
                                   batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, masking=cfg.masking,
                                   device=cfg.device, model_dtype=cfg.dtype),
                codi=codi, progress=progress)
    vectors = difference_lens(codi, vectors_from_store(open_store(ref)))
    save_vectors(vectors, out / "vectors.zarr")
    return vectors


def run_sweep(cfg: SweepConfig, out: str | Path, codi: CodiModel | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the sweep into `out/sweep.zarr`; return a summary."""
    t0 = time.perf_counter()  # not `start`: the batch loop below reuses that name
    cfg.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.dataset != "synthetic":  # a bad path fails before the model loads
        load_dataset_for(None, cfg, cfg.seed, cfg.limit)
    for c in cfg.conditions:
        Condition.from_dict(c)
    if codi is None:
        codi = load_codi_model(cfg.model, cfg.device, cfg.dtype, cfg.base)
    shape = ModelShape.of(codi, cfg.num_latents)
    conditions = expand_conditions(cfg, shape.num_latents)
    for cond in conditions:  # what the model's shape decides fails before the reference vectors are computed
        check_condition(cond, shape, reference_pairs=not cfg.vectors)
    if not cfg.vectors and not any(c.pair for c in conditions) and not any(
            c.patch in PATCH_KINDS for c in conditions):
        vectors = None
    else:
        vectors = reference_vectors(codi, cfg, out, progress)
    res = Resources.from_vectors(vectors, seed=cfg.seed)
    validate_conditions(conditions, shape, res)
    dataset = load_dataset_for(codi, cfg, cfg.seed, cfg.limit)
    questions = list(dataset["question"])
    golds = [extract_gold(a) for a in dataset["answer"]]
    ids = [str(i) for i in dataset["id"]]
    n = len(questions)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2, default=str) + "\n")
    units = [f"{c.name}|{e}" for c in conditions for e in ids]
    config = cfg.fingerprint() | {"model_id": (codi.codi_config.source or str(cfg.model)),
                                  WEIGHTS_KEY: model_weights(codi),
                                  "num_latents": shape.num_latents,
                                  "interventions": [c.as_dict() for c in conditions],
                                  "examples": ids}
    writer = StoreWriter(out / SWEEP_STORE, variables=SWEEP_VARIABLES, coords={"example": units}, config=config,
                         chunk=max(cfg.batch_size, 1))
    written = 0
    with writer:
        pending = set(writer.pending().tolist())
        bar = tqdm(total=len(pending), desc="sweep", unit="run", disable=not progress)
        # example batches (in dataset order) outside, conditions inside: at any moment every condition
        # has run on the same first examples, so a stopped sweep is a complete, unbiased smaller study
        for first in range(0, n, cfg.batch_size):
            batch = list(range(first, min(n, first + cfg.batch_size)))
            # the conditions still pending on the same examples run together: their shared prefix once
            groups: dict[tuple[int, ...], list[int]] = {}
            for ci in range(len(conditions)):
                idx = tuple(e for e in batch if ci * n + e in pending)
                if idx:
                    groups.setdefault(idx, []).append(ci)
            for idx, cis in groups.items():
                idx = list(idx)
                prompts = codi.encode([questions[i] for i in idx])
                runs = run_conditions(codi, prompts, [conditions[ci] for ci in cis], shape, res, idx,
                                      cfg.max_new_tokens, check_masking(cfg.masking), cfg.remote, fork=cfg.fork)
                # one write (one manifest update) for the whole group: atomic, so a kill loses or keeps it whole
                units, preds, correct = [], [], []
                for ci, tokens in zip(cis, runs):
                    _, p, c = score(codi, tokens, [golds[i] for i in idx])
                    units += [ci * n + i for i in idx]
                    preds.append(p)
                    correct.append(c)
                writer.write(np.array(units), {"answer_pred": np.concatenate(preds),
                                               "answer_gold": np.array([golds[i] for i in idx] * len(cis), np.float64),
                                               "correct": np.concatenate(correct)})
                written += len(units)
                bar.update(len(units))
        bar.close()
        done = writer.num_completed
    seconds = time.perf_counter() - t0
    return {"path": str(out / SWEEP_STORE), "conditions": len(conditions), "examples": n, "runs": done,
            "runs_now": written, "seconds": round(seconds, 3),
            "runs_per_second": round(written / seconds, 2) if written else None}
