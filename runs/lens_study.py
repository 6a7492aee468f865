r"""Lens study: logit lens, tuned lenses, linear probes and latent read-outs on a CODI model.

    python runs/lens_study.py --out out/lens_study                       # tiny CODI, about a minute
    python runs/lens_study.py --limit 1000 --out results/lens_1000     # the README measurement
    python runs/lens_study.py --model zen-E/CODI-gpt2 --dataset gsm8k:shipped \
        --tuned-lens out/lens-gpt2 --out out/lens_gpt2

Writes into OUT:
- `truth.jsonl`: each problem's answer, intermediate results and question numbers;
- `lens.zarr`: `hidden`, logit-lens read-outs (`lens_*`), the unembedding and vocabulary, answers;
- `lenses/<mode>/`: tuned lenses trained on `text`, `latents`, `latent:N` problems disjoint from
  the evaluated ones (tuned-lens layout), unless `--tuned-lens` names existing ones;
- `tuned-<name>.zarr`: each tuned lens's read-outs (`tuned_lens_*`);
- `acc-k<k>.zarr`: answers with k = 0..K+extra latents (early answering after latent k is the
  same computation as running with k latents: the loop's steps 0..k do not depend on K);
- `results.json`, `figures/*.png`, `report.md` (from `analyses.lens_study` and `analyses.lens_report`).
Finished stores and lenses are reused on a rerun; interrupted ones resume.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python runs/lens_study.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Config:
    """Lens study configuration (defaults: the tiny CODI, about a minute on a laptop CPU)."""

    model: str = field(default="tiny", metadata={"help": "CODI model (tiny, a converted dir, a hub id)"})
    dataset: str = field(default="synthetic", metadata={"help": "synthetic, gsm8k or a local file"})
    limit: int = field(default=200, metadata={"help": "problems evaluated"})
    seed: int | None = field(default=None, metadata={"help": "synthetic seed (default: the model's held-out test seed)"})
    tuned_lens: str | None = field(default=None, metadata={"help": "existing tuned-lens dirs, comma-separated "
                                                                   "(default: train one per --train-modes)"})
    train_modes: tuple[str, ...] = field(default=("text", "latents", "latent:3"),
                                         metadata={"help": "tuned lenses to train (text, latents, latent:N)"})
    train_limit: int = field(default=300, metadata={"help": "problems the tuned lenses train on"})
    train_seed: int = field(default=2, metadata={"help": "synthetic seed of the lens training problems"})
    train_steps: int | None = field(default=None, metadata={"help": "tuned-lens optimiser steps (default: scaled)"})
    lens_k: int = field(default=10, metadata={"help": "top-k of the stored read-outs"})
    extra_latents: int = field(default=4, metadata={"help": "accuracy is measured for K = 0 .. trained K + this"})
    probes: bool = field(default=True, metadata={"help": "train linear probes"})
    probe_folds: int = field(default=3, metadata={"help": "cross-validation folds of the probes"})
    batch_size: int = 64
    device: str = "cpu"


def demo_config() -> Config:
    """Smaller: 64 problems, one latent-trained tuned lens, K up to trained K + 2."""
    return Config(limit=64, train_modes=("latents",), train_limit=128, extra_latents=2)


def _mode_name(mode: str) -> str:
    return mode.replace(":", "")


def _dataset(codi, config: Config, seed: int, limit: int):
    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options

    if config.dataset == "synthetic":
        return load_eval_dataset("synthetic", limit=limit, seed=seed, **synthetic_options(codi))
    return load_eval_dataset(config.dataset, limit=limit, seed=seed)


def _capture(out: Path, codi, config: Config, seed: int, variables, progress: bool, **kw) -> None:
    from nnsight_codi.activation_capture import CaptureConfig, run_capture

    cfg = CaptureConfig(model=config.model, dataset=config.dataset, seed=seed, limit=config.limit,
                        variables=tuple(variables), batch_size=config.batch_size, device=config.device,
                        lens_k=config.lens_k, **kw)
    run_capture(out, cfg, codi=codi, progress=progress)


def _train_lenses(codi, config: Config, out: Path, eval_questions: set[str], progress: bool) -> dict[str, Path]:
    from nnsight_codi.lens.lens_training import TrainConfig, collect, default_steps, parse_data_mode, train_tuned_lens

    if config.tuned_lens:
        paths = [Path(p) for p in config.tuned_lens.split(",") if p.strip()]
        for p in paths:
            if not (p / "config.json").is_file():
                raise FileNotFoundError(f"tuned lens {p} not found (needs config.json + params.pt)")
        return {p.name: p for p in paths}
    for mode in config.train_modes:
        parse_data_mode(mode, codi.num_latents)  # bad modes fail before any work
    lenses = {}
    train = None
    for mode in config.train_modes:
        path = out / "lenses" / _mode_name(mode)
        lenses[_mode_name(mode)] = path
        if (path / "params.pt").is_file() and (path / "config.json").is_file():
            continue
        if train is None:
            train = _dataset(codi, config, config.train_seed, config.train_limit)
            train = train.filter(lambda q: q not in eval_questions, input_columns="question")
        data = collect(codi, train, mode, progress=progress)
        steps = config.train_steps or default_steps(len(data), 512)
        train_tuned_lens(codi, data, TrainConfig(steps=steps), out=path, progress=progress,
                         meta={"data": mode, "dataset": config.dataset, "seed": config.train_seed,
                               "limit": config.train_limit})
    return lenses


def run(config: Config, out, progress: bool = True) -> dict[str, Any]:
    """Capture, train, analyse; write `results.json`, `figures/`, `report.md`; return the results."""
    from analyses import lens_report, lens_study
    from nnsight_codi.evaluation import direct_answer_budget
    from nnsight_codi.lens.values import dataset_truth
    from nnsight_codi.loading import load_model
    from nnsight_codi.reporting import write_study

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.limit < 10:
        raise ValueError(f"limit must be >= 10 (bootstrap CIs and probes need examples), got {config.limit}")
    codi = load_model(config.model, device=config.device)
    seed = config.seed if config.seed is not None else int(codi.codi_config.extra.get("test_seed", 1))
    dataset = _dataset(codi, config, seed, config.limit)
    truth = dataset_truth(dataset)
    (out / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth))
    budget = direct_answer_budget(codi)

    lenses = _train_lenses(codi, config, out, set(dataset["question"]), progress)
    _capture(out / "lens.zarr", codi, config, seed,
             ("hidden", "lens", "unembed", "answer_pred", "answer_gold", "correct"), progress,
             max_new_tokens=budget)
    for name, path in lenses.items():
        _capture(out / f"tuned-{name}.zarr", codi, config, seed, ("tuned_lens", "correct"), progress,
                 lens_path=str(path), max_new_tokens=budget)
    for k in range(0, codi.num_latents + config.extra_latents + 1):
        _capture(out / f"acc-k{k}.zarr", codi, config, seed, ("answer_pred", "answer_gold", "correct"), progress,
                 num_latents=k, max_new_tokens=budget)

    result = lens_study.analyse(out, out, probes=config.probes, probe_folds=config.probe_folds, progress=progress)
    result["config"] = {**asdict(config), "seed": seed, "max_new_tokens": budget}
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_study(out, lens_report, result, model=codi)
    return result


if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "out/lens_study", __doc__))
