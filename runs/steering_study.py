"""The seed's study end to end ("Latent Reasoning Sprint #3: Activation Difference Steering and Logit
Lens", on CODI), with matched edit sites: vectors → hidden and KV sweeps, site by site → random/mean/zero
baselines → a second sweep where the unsteered model has room to rise → figures → report.

1. Capture a reference set of held-out problems (`reference_seed`): hidden states, latent inputs, KV cache.
2. Vectors: mean(latent A) − mean(latent B) for the chosen pairs, on the residual stream and the KV cache
   (`sweep/vectors.zarr`, with the activation-difference logit lens).
3. Sweep (`sweep/sweep.zarr`, resumable). `sites="matched"` (default): hidden-state steering at each latent
   k and each of `layers` (embedding side, layer 1, middle, last by default), every run with one extra latent step
   as the seed did, and its KV twin: the cache entry of latent k alone, edited after the last latent (the
   cache eot reads), plus all latent entries at once; `none+x` (the extra step alone) is the hidden rows'
   control. `sites="seed"`: only the seed's own design (hidden at latents 1–4, last layer, + one extra step;
   KV at every latent entry of the cache eot reads) — a subset of `matched`, also reported from it.
   `sites="last"`: the earlier study (hidden at the last latent's last layer + extra step; KV at all latents).
   Latent patching baselines (random with matched statistics, mean, zero) at the last latent.
4. Headroom (`headroom/`): the same conditions on problems of the generator with `headroom_steps`
   operations (one more than the tiny CODI was trained on: its unsteered accuracy falls to about 55%),
   with the same vectors; a condition beats the baseline if its exact McNemar test survives Holm's
   correction over all steering conditions.
5. Analysis (`analyses.steering`): accuracy and Δ vs the unsteered run with paired bootstrap CIs, the
   route comparison site by site (answers changed and Δ accuracy, hidden − KV with paired CIs), heatmaps,
   significant conditions, difference lens, PCA, and the comparison with the source.

    python runs/steering_study.py --out out/steering_study                           # demo-sized
    nice python runs/steering_study.py --limit 1000 --out results/steering_1000  # the README measurement
    nice python runs/steering_study.py --limit 300 --out results/steering_300    # the same at 300 problems
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnsight_codi.steps import parse_step, resolve_step  # noqa: E402

SITE_SETS = ("matched", "seed", "last")


@dataclass
class Config:
    """The steering study (defaults: the tiny CODI, a few minutes on a laptop CPU)."""

    model: str = "tiny"
    dataset: str = "synthetic"
    limit: int = 50
    seed: int = 1
    reference_limit: int = 100
    reference_seed: int = 2
    coefs: tuple[float, ...] = (-2.0, -0.5, 0.5, 2.0)
    pairs: str = field(default="1-6,3-5", metadata={
        "help": "'all' ordered latent pairs, or 'A-B,C-D' ((A, B, +c) is the same edit as (B, A, -c))"})
    sites: str = field(default="matched", metadata={"help": "matched | seed | last (see the module doc)"})
    layers: tuple[int, ...] | None = field(default=None, metadata={
        "help": "hidden-steering layers of the matched sites (default: 0 = embedding side, 1, L//2, L)"})
    modes: tuple[str, ...] = ("hidden", "kv")
    baselines: tuple[str, ...] = ("random", "mean", "zero")
    extra_latent_step: bool = True
    positions: str = field(default="latents", metadata={"help": "KV positions of sites=last"})
    headroom: bool = field(default=True, metadata={"help": "also run on harder problems (room to rise)"})
    headroom_steps: int = field(default=4, metadata={"help": "operations per headroom problem"})
    headroom_limit: int | None = field(default=None, metadata={"help": "headroom problems (default: limit)"})
    headroom_seed: int = 11
    max_new_tokens: int = 16
    batch_size: int = 100
    device: str = "cpu"
    analyze_only: bool = field(default=False, metadata={
        "help": "analyse the sweeps as far as they have run (every condition shares its finished examples) "
                "without resuming them"})

    def pair_list(self, num_latents: int) -> list[tuple[int, int]]:
        if self.pairs == "all":
            return [(a, b) for a in range(1, num_latents + 1) for b in range(1, num_latents + 1) if a != b]
        try:
            return [tuple(resolve_step(parse_step(x), num_latents) for x in p.split("-"))  # type: ignore[misc]
                    for p in self.pairs.split(",")]
        except ValueError as err:
            raise ValueError(f"pairs must be 'all' or 'A-B,C-D' (latent indices or names: latent1-latent3), "
                             f"got {self.pairs!r}") from err

    def site_layers(self, num_layers: int) -> list[int]:
        layers = list(self.layers) if self.layers is not None else sorted({0, 1, num_layers // 2, num_layers})
        bad = [l for l in layers if not 0 <= l <= num_layers]
        if bad:
            raise ValueError(f"layers {bad} out of range 0..{num_layers}")
        return layers

    def conditions(self, num_latents: int, num_layers: int) -> list[dict[str, Any]]:
        """The steering conditions of the site set (dicts of `Condition` fields), `none+x` first."""
        from nnsight_codi.interventions.conditions import Condition

        if self.sites not in SITE_SETS:
            raise ValueError(f"unknown site set {self.sites!r}: use one of {', '.join(SITE_SETS)}")
        bad = [m for m in self.modes if m not in ("hidden", "kv")]
        if bad:
            raise ValueError(f"unknown mode(s) {bad}: use hidden and/or kv")
        k, top = num_latents, num_layers
        if self.sites == "matched":
            hidden_sites = [(at, l) for at in range(1, k + 1) for l in self.site_layers(num_layers)]
            kv_sites = [f"latent{at}" for at in range(1, k + 1)] + ["latents"]
        elif self.sites == "seed":
            hidden_sites = [(at, top) for at in range(1, min(4, k) + 1)]
            kv_sites = ["latents"]
        else:
            hidden_sites, kv_sites = [(k, top)], [self.positions]
        out = [Condition("none", extra_latent_step=True)] if "hidden" in self.modes and self.extra_latent_step else []
        for pair in self.pair_list(k):
            for c in self.coefs:
                if "hidden" in self.modes:
                    out += [Condition("hidden", pair=pair, coef=float(c), at=at, layer=l,
                                      extra_latent_step=self.extra_latent_step) for at, l in hidden_sites]
                if "kv" in self.modes:
                    out += [Condition("kv", pair=pair, coef_k=float(c), coef_v=float(c), positions=p)
                            for p in kv_sites]
        return [c.as_dict() for c in out]

    def sweep_config(self, num_latents: int, num_layers: int, **over):
        from nnsight_codi.interventions.steering_sweep import SweepConfig

        pairs = sorted({p for p in self.pair_list(num_latents)})
        cfg = dict(model=self.model, dataset=self.dataset, limit=self.limit, seed=self.seed,
                   max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, device=self.device,
                   reference_limit=self.reference_limit, reference_seed=self.reference_seed,
                   modes=[], pairs=[list(p) for p in pairs], coefs=[float(c) for c in self.coefs],
                   baselines=list(self.baselines), conditions=self.conditions(num_latents, num_layers))
        cfg.update(over)
        return SweepConfig(**cfg)


def demo_config() -> Config:
    """A small sweep: one pair at ±2, every matched site, 30 problems (+ 30 headroom problems)."""
    return Config(limit=30, reference_limit=40, coefs=(-2.0, 2.0), pairs="1-2")


def _ensure_lens(sweep_dir: Path, model: str, device: str) -> None:
    """Add the activation-difference lens to a vector store written without it."""
    from nnsight_codi.interventions.steering_vectors import difference_lens
    from nnsight_codi.store.vector_store import open_vectors, save_vectors

    path = sweep_dir / "vectors.zarr"
    if not path.exists():
        return
    vectors = open_vectors(path)
    if "lens_top_tokens" not in vectors:
        from nnsight_codi.loading import load_codi_model

        save_vectors(difference_lens(load_codi_model(model, device), vectors), path)


def _write_headroom_problems(config: Config, codi, path: Path) -> str:
    from nnsight_codi.data.eval_datasets import synthetic_options
    from nnsight_codi.data.synthetic import generate_problems

    if config.headroom_steps < 1:
        raise ValueError(f"headroom_steps must be >= 1, got {config.headroom_steps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        opts = synthetic_options(codi, {"min_steps": config.headroom_steps, "max_steps": config.headroom_steps})
        ds = generate_problems(config.headroom_limit or config.limit, seed=config.headroom_seed, **opts)
        ds.select_columns(["id", "question", "answer"]).to_json(str(path), lines=True)
    return str(path)


def _sweep(config: Config, cfg, sweep_dir: Path, codi, progress: bool) -> dict[str, Any]:
    from nnsight_codi.interventions.steering_sweep import run_sweep
    from nnsight_codi.store.sweep_store import open_sweep

    if config.analyze_only:
        ds = open_sweep(sweep_dir)
        done = ds["complete"].values.all(axis=0)
        return {"path": str(sweep_dir / "sweep.zarr"), "conditions": int(ds.sizes["condition"]),
                "examples": int(done.sum()), "runs": int(ds["complete"].values.sum()), "planned_examples": int(done.size)}
    return run_sweep(cfg, sweep_dir, codi=codi, progress=progress)


def run(config: Config, out, progress: bool = True) -> dict[str, Any]:
    """Run the steering study into `out` (sweeps, optional headroom sweep, analysis, report); return the results."""
    from analyses import steering, steering_report
    from nnsight_codi.loading import load_codi_model
    from nnsight_codi.reporting import write_study

    out = Path(out)
    sweep_dir = out / "sweep"
    codi = None if config.analyze_only else load_codi_model(config.model, config.device)
    if codi is not None:
        num_latents, num_layers = codi.num_latents, codi.num_layers
        config.conditions(num_latents, num_layers)  # a bad site set, pair or layer fails before any work
    summary = _sweep(config, config.sweep_config(num_latents, num_layers) if codi else None, sweep_dir, codi, progress)
    _ensure_lens(sweep_dir, config.model, config.device)
    head_summary = None
    if config.headroom:
        head_dir = out / "headroom"
        cfg = None
        if codi is not None:
            problems = _write_headroom_problems(config, codi, head_dir / "problems.jsonl")
            cfg = config.sweep_config(num_latents, num_layers, dataset=problems, limit=config.headroom_limit or config.limit,
                                      vectors=str(sweep_dir / "vectors.zarr"))
        head_summary = _sweep(config, cfg, head_dir, codi, progress)
    results = steering.analyse(out, out, sweep=summary, config=asdict(config), headroom_sweep=head_summary)
    write_study(out, steering_report, results, model=codi)
    return results

if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "out/steering_study", __doc__))
