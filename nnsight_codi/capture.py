"""Capture a dataset's latent-loop activations into a resumable zarr store.

`run_capture` is what `nnsight-codi capture` runs: it validates everything (variables, layers,
dataset, output path) before any model work, then streams batch by batch through the one
latent loop (`hooks.run_loop` with a `Capture` hook) into a `StoreWriter`. Killed at any point
and started again with the same configuration, it resumes where it stopped.

Example:
    >>> summary = run_capture("out/tiny.zarr", CaptureConfig(model="tiny", limit=64))   # doctest: +SKIP
    >>> ds = open_store("out/tiny.zarr")                                                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .data.scoring import extract_gold, extract_prediction
from .store.positions import left_align, pad_counts_from_mask
from .store.schema import parse_variables, validate_layers
from .tracing.capture import CAPTURABLE, Capture, assemble
from .tracing.hooks import run_loop


@dataclass
class CaptureConfig:
    """What to capture; every field is recorded in the store and must match on resume."""

    model: str = "tiny"
    dataset: str = "synthetic"
    split: str = "test"
    seed: int = 1
    limit: int | None = None
    variables: tuple[str, ...] = ("hidden", "latent_input", "answer_pred", "answer_gold", "correct", "prompt_ids")
    layers: tuple[int, ...] | None = None
    num_latents: int | None = None
    batch_size: int = 32
    max_new_tokens: int = 256
    masking: str = "exact"
    store_dtype: str = "float32"
    model_dtype: str = "float32"
    device: str = "cpu"
    base: str | None = None
    remote: Any = None
    interventions: list[dict] = field(default_factory=list)

    def fingerprint(self, codi) -> dict[str, Any]:
        """The part of the config that defines the store's content (device, batch size, remote do not)."""
        data = dataclasses.asdict(self)
        for volatile in ("device", "remote", "base", "batch_size"):
            data.pop(volatile)
        data["variables"] = list(self.variables)
        data["layers"] = list(self.layers) if self.layers is not None else None
        cfg = codi.codi_config
        data["model_id"] = cfg.source or str(self.model)
        data["model_revision"] = cfg.revision
        data["num_latents"] = codi.num_latents if self.num_latents is None else self.num_latents
        return data


def run_capture(out: str | Path, config: CaptureConfig, codi=None, progress: bool = True) -> dict[str, Any]:
    """Capture `config` into the store at `out`; return a summary (`examples`, `bytes`, `seconds`, `path`)."""
    from .data.sources import load_eval_dataset
    from .store import StoreWriter

    start = time.perf_counter()
    variables = parse_variables(list(config.variables))  # unknown names fail here, before any work
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    _check_writable(Path(out))
    dataset = load_eval_dataset(config.dataset, split=config.split, limit=config.limit, seed=config.seed)
    if codi is None:
        from .commands.common import load_codi_model

        codi = load_codi_model(config.model, config.device, config.model_dtype, config.base)
    num_layers = codi.num_layers
    layers = validate_layers(config.layers, num_layers)
    k = codi.num_latents if config.num_latents is None else int(config.num_latents)
    if k < 0:
        raise ValueError(f"num_latents must be >= 0, got {k}")
    model_vars = [v for v in variables if v in CAPTURABLE]
    hook = Capture(model_vars, layers, k)

    questions = list(dataset["question"])
    golds = [extract_gold(a) for a in dataset["answer"]]
    prompt_lengths = [len(codi.prompt_ids(q)) for q in questions]
    width = max(prompt_lengths) + k + 3
    lm_config = codi._module.config
    heads = int(getattr(lm_config, "num_key_value_heads", None) or lm_config.num_attention_heads)
    head_dim = int(getattr(lm_config, "head_dim", None) or codi.hidden_size // lm_config.num_attention_heads)
    writer = StoreWriter(
        out, variables=list(variables), config=config.fingerprint(codi), num_layers=num_layers,
        coords={"example": [str(i) for i in dataset["id"]], "question": questions,
                "step_name": codi.step_names(k), "layer": list(layers)},
        sizes={"dim": codi.hidden_size, "position": width, "head": heads, "head_dim": head_dim},
        dtype=config.store_dtype, chunk=config.batch_size, pad_id=codi.codi_config.pad_id,
    )
    written = 0
    with writer:
        todo = writer.pending()
        bar = tqdm(total=len(todo), desc="capture", unit="q", disable=not progress)
        with _maybe_eager(codi, hook.needs_attentions):
            for idx in writer.batches(config.batch_size):
                data = _capture_batch(codi, hook, [questions[i] for i in idx], [golds[i] for i in idx],
                                      config, k, width, variables)
                writer.write(idx, data)
                written += len(idx)
                bar.update(len(idx))
        bar.close()
        complete = writer.num_completed
    return {"path": str(out), "examples": complete, "written_now": written,
            "bytes": _dir_bytes(Path(out)), "seconds": round(time.perf_counter() - start, 3),
            "variables": list(variables), "layers": list(layers), "num_latents": k}


def _capture_batch(codi, hook: Capture, questions: list[str], golds: list[float], config: CaptureConfig,
                   k: int, width: int, variables: tuple[str, ...]) -> dict[str, np.ndarray]:
    import torch

    prompts = codi.encode(questions)
    with torch.inference_mode():
        tokens, records = run_loop(codi, prompts, [hook], num_latents=k, max_new_tokens=config.max_new_tokens,
                                   masking=config.masking, remote=config.remote,
                                   output_attentions=hook.needs_attentions)
    data = assemble(records, hook, prompts.attention_mask, width, codi.hidden_size) if hook.variables else {}
    preds = np.array([extract_prediction(t) for t in codi.decode(tokens)], dtype=np.float64)
    preds[~np.isfinite(preds)] = np.nan
    gold = np.array(golds, dtype=np.float64)
    extra = {"answer_pred": preds, "answer_gold": gold, "correct": preds == gold}
    pads = pad_counts_from_mask(prompts.attention_mask)
    lengths = prompts.attention_mask.sum(-1).cpu().numpy().astype(np.int32)
    if "prompt_ids" in variables:
        extra["prompt_ids"] = left_align(prompts.input_ids, pads, fill=codi.codi_config.pad_id).astype(np.int32)
    data.update({name: value for name, value in extra.items() if name in variables})
    data["prompt_length"] = lengths
    return data


def _maybe_eager(codi, needed: bool):
    from contextlib import nullcontext

    return codi.eager_attention() if needed else nullcontext()


def _check_writable(path: Path) -> None:
    parent = path if path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    import os

    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write the store at {path}: {parent} is not writable")


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
