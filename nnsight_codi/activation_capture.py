"""Capture a dataset's latent-loop activations into a resumable zarr store.

`run_capture` is what `nnsight-codi capture` runs: it validates everything (variables, layers,
dataset, output path) before any model work, then streams batch by batch through the one
latent loop (`loop.run_loop` with a `Capture` hook) into a `StoreWriter`. Killed at any point
and started again with the same configuration, it resumes where it stopped.

A plain HF LM is captured the same way with `positions` (from the prompt's end) as its steps:
one forward pass per batch, the same `Capture` hook and `visit_step` walk.

Example:
    >>> summary = run_capture("out/tiny.zarr", CaptureConfig(model="tiny", limit=64))   # doctest: +SKIP
    >>> ds = open_store("out/tiny.zarr")                                                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from .data.scoring import extract_gold, extract_prediction
from .interventions.conditions import capture_interventions
from .models.architecture import kv_geometry
from .models.fingerprint import WEIGHTS_KEY, model_weights
from .runspec import run_spec
from .steps import resolve_num_latents
from .store.positions import left_align, pad_counts_from_mask, source_labels
from .store.schema import parse_variables, validate_layers
from .tracing.capture_hook import CAPTURABLE, Capture, assemble
from .tracing.loop import check_masking, run_loop
from .tracing.plain_lm import PlainLM

if TYPE_CHECKING:
    from nnsight import TransformersModel

    from .tracing.codi_model import CodiModel


@dataclass
class CaptureConfig(run_spec()):
    """What to capture (and the run: `runspec.RunSpec`); every field is recorded in the store and must match on resume."""

    variables: tuple[str, ...] = ("hidden", "latent_input", "answer_pred", "answer_gold", "correct", "prompt_ids")
    layers: tuple[int, ...] | None = None
    num_latents: int | None = None
    max_new_tokens: int = 256
    masking: str = "exact"
    store_dtype: str = "float32"
    model_dtype: str = "float32"
    base: str | None = None
    remote: Any = None
    positions: tuple[int, ...] | None = None
    ndif_model: str | None = None
    lora_mode: str = "merged"
    interventions: list[dict] = field(default_factory=list)
    synthetic: dict[str, Any] | None = None
    lens_k: int = 10
    lens_path: str | None = None
    step_tokens: int = 48

    def fingerprint(self, codi: CodiModel | TransformersModel) -> dict[str, Any]:
        """The part of the config that defines the store's content (device, batch size, remote do not)."""
        data = dataclasses.asdict(self)
        if self.synthetic is None:
            data.pop("synthetic")  # stores written before the option existed keep their fingerprint
        if not any(v.startswith(("lens_", "tuned_lens_")) for v in self.variables):
            data.pop("lens_k")  # likewise for stores without lens read-outs
            data.pop("lens_path")
        if not any(v in ("step_text", "step_ids") for v in self.variables):
            data.pop("step_tokens")  # likewise for stores without the step-decoder lens
        for volatile in ("device", "remote", "base", "batch_size", "ndif_model", "lora_mode"):
            data.pop(volatile)
        data["variables"] = list(self.variables)
        data["layers"] = list(self.layers) if self.layers is not None else None
        data["positions"] = list(self.positions) if self.positions is not None else None
        cfg = getattr(codi, "codi_config", None)
        data["model_id"] = (cfg.source if cfg else None) or str(self.model)
        data["model_revision"] = cfg.revision if cfg else None
        family = getattr(cfg, "latent_family", "codi") if cfg else None
        if family not in (None, "codi"):  # absent = codi, so every CODI store keeps its fingerprint
            data["latent_family"] = family
        data["num_latents"] = resolve_num_latents(self.num_latents, cfg.num_latents) if cfg else 0
        # merged weights only: a base + LoRA-interventions run resumes a merged run's store and back
        data[WEIGHTS_KEY] = model_weights(codi) if self.lora_mode == "merged" else None
        return data


def run_capture(out: str | Path, config: CaptureConfig, codi: CodiModel | TransformersModel | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Capture `config` into the store at `out`; return a summary (`examples`, `bytes`, `seconds`, `path`).

    A steered capture (`config.interventions`: condition dicts, each optionally with a `vectors` store
    path) runs their hooks (`interventions.conditions.capture_interventions`) before `Capture`, so the
    store records the steered run.
    """
    from .data.eval_datasets import load_eval_dataset, synthetic_options
    from .store import BackgroundStoreWriter, StoreWriter

    start = time.perf_counter()
    from .lens.lens_readouts import LensRequest, with_tuned

    variables = with_tuned(parse_variables(list(config.variables)), config.lens_path)  # unknown names fail here
    lens = LensRequest.from_variables(variables, config.lens_k, config.lens_path)
    from .lens.step_decoder import StepTextRequest

    steps_req = StepTextRequest.from_variables(variables, config.step_tokens)
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    _check_writable(Path(out))
    if config.dataset != "synthetic":  # a bad path fails before the model loads
        dataset = load_eval_dataset(config.dataset, split=config.split, limit=config.limit, seed=config.seed)
    if codi is None:
        from .loading import load_model

        codi = load_model(config.model, device=config.device, dtype=config.model_dtype, base=config.base,
                          lora_mode=config.lora_mode)
    if config.dataset == "synthetic":  # problems from the distribution the model was trained on
        dataset = load_eval_dataset("synthetic", limit=config.limit, seed=config.seed,
                                    **synthetic_options(codi, config.synthetic))
    if config.ndif_model:
        codi.use_ndif_repo(config.ndif_model)
    if config.remote and hasattr(type(codi), "executor"):
        codi.executor(config.remote)  # base + LoRA interventions: check the (hosted) base before any work
    target = _target(codi, config)
    lens.load(codi)
    if steps_req.active:
        if target.positions is not None:
            raise ValueError("step_text / step_ids need a CODI model with a SIM-CoT step decoder (a plain LM has "
                             "no latent steps)")
        steps_req.check(codi)
        target.step_lens = steps_req
    layers = validate_layers(config.layers, target.num_layers)
    k = target.num_latents
    model_vars = [v for v in variables if v in CAPTURABLE or (v == "hidden" and lens.needs_hidden)]
    if steps_req.active and not model_vars:
        model_vars = ["latent_input"]  # the Capture hook needs a variable; the step lens records its own sites
    if lens.needs_hidden and "hidden" not in model_vars:
        model_vars.append("hidden")  # the lens reads the recorded residual stream
    hook = Capture(model_vars, layers, k, positions=target.positions)
    if config.interventions:  # a steered capture: the intervention hooks run before Capture
        if target.positions is not None:
            raise ValueError("interventions need a CODI model (a plain LM capture has no latent loop)")
        target.interventions = capture_interventions(codi, config.interventions, target.num_latents, config.seed)
    if target.positions is not None and set(variables) & set(ANSWER_VARIABLES):
        raise ValueError(f"{sorted(set(variables) & set(ANSWER_VARIABLES))} need a CODI model; "
                         "a plain LM capture records activations only")

    questions = list(dataset["question"])
    golds = [extract_gold(a) for a in dataset["answer"]]
    width = max(target.prompt_length(q) for q in questions) + k + 3
    lm_config = codi._module.config
    heads, head_dim = kv_geometry(lm_config)
    sources = [target.source_labels(q) for q in questions]  # what each attended position is
    cots = list(dataset["cot"] if "cot" in dataset.column_names else dataset["answer"])
    # Writes overlap with the next batch (store/background.py), except under remote="local":
    # nnsight's local backend takes every non-server module out of sys.modules while it
    # deserialises a request, and a writer thread importing zarr in that window breaks the
    # process's imports (seen as "module 'zarr' has no attribute 'codecs'").
    writer_class = StoreWriter if config.remote == "local" else BackgroundStoreWriter
    writer = writer_class(
        out, variables=list(lens.store_variables), config=config.fingerprint(codi), num_layers=target.num_layers,
        coords={"example": [str(i) for i in dataset["id"]], "question": questions,
                "step_name": target.step_names, "layer": list(layers), "cot": cots,
                "source_token": [t for t, _ in sources], "source_kind": [k for _, k in sources]},
        sizes={"dim": target.hidden_size, "position": width, "head": heads, "head_dim": head_dim,
               "block": target.num_layers, "attention_head": int(lm_config.num_attention_heads),
               "k": int(config.lens_k), "step_token": int(config.step_tokens)},
        dtype=config.store_dtype, chunk=config.batch_size, pad_id=target.pad_id,
    )
    written = 0
    with writer:
        lens.write_static(out, codi)
        todo = writer.pending()
        bar = tqdm(total=len(todo), desc="capture", unit="q", disable=not progress)
        with _maybe_eager(codi, hook.needs_attentions):
            for idx in writer.batches(config.batch_size):
                target.batch_indices = idx
                data = _capture_batch(target, hook, [questions[i] for i in idx], [golds[i] for i in idx],
                                      config, width, variables)
                data = lens.apply(codi, data, layers)
                writer.write(idx, data)
                written += len(idx)
                bar.update(len(idx))
        bar.close()
        complete = writer.num_completed
    return {"path": str(out), "examples": complete, "written_now": written,
            "bytes": _dir_bytes(Path(out)), "seconds": round(time.perf_counter() - start, 3),
            "variables": list(variables), "layers": list(layers), "num_latents": k,
            "steps": list(target.step_names)}


ANSWER_VARIABLES = ("answer_pred", "answer_gold", "correct")


class _CodiTarget:
    """A CODI model: prompts end in bot; steps are bot, latents, eot; answers are decoded."""

    positions = None
    interventions: Callable[..., list] | None = None  # example indices -> hooks (a steered capture)
    batch_indices: np.ndarray | None = None
    step_lens: Any = None  # lens.step_decoder.StepTextRequest when step_text / step_ids are captured

    def __init__(self, codi: CodiModel, config: CaptureConfig) -> None:
        self.model, self.config = codi, config
        self._decoded: dict[int, str] = {}
        self.num_layers, self.hidden_size = codi.num_layers, codi.hidden_size
        self.num_latents = resolve_num_latents(config.num_latents, codi.num_latents)
        self.step_names = codi.step_names(self.num_latents)
        self.pad_id = codi.codi_config.pad_id

    def prompt_length(self, question: str) -> int:
        return len(self.model.prompt_ids(question))

    def source_labels(self, question: str) -> tuple[list[str], list[str]]:
        """Token strings and kinds of `[question][bot][z1..zK][eot]` (store coordinates)."""
        cfg = self.model.codi_config
        eot = [cfg.eot_id] if cfg.remove_eos else [cfg.eot_id, cfg.eos_id]
        return source_labels(_token_strings(self.model.tokenizer, self.model.prompt_ids(question), self._decoded),
                             self.num_latents, _token_strings(self.model.tokenizer, eot, self._decoded))

    def encode(self, questions: list[str]):
        return self.model.encode(questions)

    def run(self, prompts, hook: Capture):
        hooks = [*self.interventions(self.batch_indices), hook] if self.interventions else [hook]
        if self.step_lens is not None:
            hooks.append(self.step_lens.hook(self.num_latents, self.num_layers))
        tokens, records = run_loop(self.model, prompts, hooks, num_latents=self.num_latents,
                                   max_new_tokens=self.config.max_new_tokens, masking=check_masking(self.config.masking),
                                   remote=self.config.remote, output_attentions=hook.needs_attentions)
        return self.model.decode(tokens), records


class _PlainTarget:
    """A plain HF LM: one forward pass over the question; chosen positions are the steps."""

    num_latents = 0
    interventions: Callable[..., list] | None = None  # never set: a plain LM has no latent loop
    batch_indices: np.ndarray | None = None
    step_lens: Any = None  # never set: a plain LM has no step decoder

    def __init__(self, model: TransformersModel, config: CaptureConfig) -> None:
        self.model, self.config = model, config
        self.lm = PlainLM.of(model)
        self._decoded: dict[int, str] = {}
        self.positions = tuple(config.positions or (-1,))
        self.num_layers, self.hidden_size, self.pad_id = self.lm.num_layers, self.lm.hidden_size, self.lm.pad_id
        self.step_names = [f"pos{p}" for p in self.positions]

    def prompt_length(self, question: str) -> int:
        return len(self.lm.prompt_ids(question))

    def source_labels(self, question: str) -> tuple[list[str], list[str]]:
        return source_labels(_token_strings(self.model.tokenizer, self.lm.prompt_ids(question), self._decoded), None)

    def encode(self, questions: list[str]):
        return self.lm.encode(questions)

    def run(self, prompts, hook: Capture):
        import nnsight

        from .tracing.hooks import visit_step
        from .tracing.remote import remote_kwargs

        extra = {"output_attentions": True} if hook.needs_attentions else {}
        extra.update(remote_kwargs(self.config.remote))  # ships this package's hook code by value
        with self.model.trace(input_ids=prompts.input_ids, attention_mask=prompts.attention_mask,
                              use_cache="kv" in hook.variables, **extra):
            sink = nnsight.save([])
            visit_step(self.model, 0, [hook], sink, self.num_layers)
        return None, list(sink)


def _target(model: CodiModel | TransformersModel, config: CaptureConfig):
    from .tracing.codi_model import CodiModel

    if isinstance(model, CodiModel):
        if config.positions is not None:
            raise ValueError("positions are for plain LMs; a CODI capture's steps are bot, latents and eot")
        return _CodiTarget(model, config)
    return _PlainTarget(model, config)


def _capture_batch(target, hook: Capture, questions: list[str], golds: list[float], config: CaptureConfig,
                   width: int, variables: tuple[str, ...]) -> dict[str, np.ndarray]:
    import torch

    prompts = target.encode(questions)
    with torch.inference_mode():
        answers, records = target.run(prompts, hook)
    data = assemble(records, hook, prompts.attention_mask, width, target.hidden_size) if hook.variables else {}
    if target.step_lens is not None:
        if "latent_input" not in variables:
            data.pop("latent_input", None)  # recorded only so that the Capture hook had a variable
        data.update(target.step_lens.arrays(target.model, records, target.num_latents))
    extra: dict[str, np.ndarray] = {}
    if answers is not None:
        preds = np.array([extract_prediction(t) for t in answers], dtype=np.float64)
        preds[~np.isfinite(preds)] = np.nan
        gold = np.array(golds, dtype=np.float64)
        extra = {"answer_pred": preds, "answer_gold": gold, "correct": preds == gold}
    pads = pad_counts_from_mask(prompts.attention_mask)
    if "prompt_ids" in variables:
        extra["prompt_ids"] = left_align(prompts.input_ids, pads, fill=target.pad_id).astype(np.int32)
    data.update({name: value for name, value in extra.items() if name in variables})
    data["prompt_length"] = prompts.attention_mask.sum(-1).cpu().numpy().astype(np.int32)
    return data


def _token_strings(tokenizer, ids: list[int], cache: dict[int, str]) -> list[str]:
    """Each id decoded on its own (`tokenizer.decode([i])`), memoised in `cache`."""
    out = []
    for i in ids:
        i = int(i)
        if i not in cache:
            cache[i] = tokenizer.decode([i])
        out.append(cache[i])
    return out


def _maybe_eager(model: TransformersModel, needed: bool):
    """Eager attention while capturing attention weights (sdpa returns none)."""
    from .tracing.codi_model import eager_attention

    return eager_attention(model._module) if needed else nullcontext()


def _check_writable(path: Path) -> None:
    parent = path if path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write the store at {path}: {parent} is not writable")


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
