"""The CODI training loop: data, optimiser, schedule, periodic evaluation, checkpoints, resume.

Output directory layout (`cfg.out`)::

    train_config.json      the TrainConfig
    log.jsonl              one JSON object per logging interval / evaluation
    checkpoint/state.pt    model + prj + optimizer + step (resume with resume=True)
    model/                 the converted CODI directory (save_converted), written at the end
    metrics.json           final held-out accuracies (K latents, 0 latents, teacher CoT)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..data.rows import Encoded, clean_question, encode_answer, prepare_cot
from ..models.codi_config import CodiConfig
from ..models.converted import save_converted
from ..models.projection import build_projection
from ..steps import resolve_num_latents
from .base import embedding_matrix, family_of, hf_base, tiny_base
from .codi import codi_losses
from .encode import collate
from .lora_layers import apply_lora, merge_lora
from .train_config import TrainConfig
from .train_evaluator import evaluate_student, evaluate_teacher

CHECKPOINT = "checkpoint/state.pt"


@dataclass
class Setup:
    """Everything a run needs besides the data."""

    model: PreTrainedModel
    prj: nn.Module
    tokenizer: PreTrainedTokenizerBase
    ids: dict[str, int]


def build_setup(cfg: TrainConfig) -> Setup:
    """Base model, tokenizer, special ids and a fresh projection (seeded)."""
    if cfg.base == "tiny-gpt2":
        model, tok, ids = tiny_base(cfg.max_number, cfg.n_layer, cfg.n_embd, cfg.n_head, seed=cfg.seed,
                                    number_init=cfg.number_init)
    else:
        model, tok, ids = hf_base(cfg.base)
    hidden = embedding_matrix(model).shape[1]
    torch.manual_seed(cfg.seed + 1)
    prj = build_projection(hidden, cfg.prj_dim or hidden, layer_norm=cfg.prj_layer_norm)
    if cfg.lora_r > 0:
        apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, seed=cfg.seed, train_token_ids=[
            ids["pad_id"], ids["bot_id"], ids["eot_id"]])
    model.to(cfg.device)  # pyright: ignore[reportArgumentType]  (transformers wraps .to with functools.wraps)
    prj.to(cfg.device)
    return Setup(model, prj, tok, ids)


def load_data(cfg: TrainConfig):
    """`(train, eval)` datasets: synthetic (disjoint seeds) or local GSM8k-Aug files."""
    if cfg.dataset == "synthetic":
        from ..data.synthetic import make_train_test

        splits = make_train_test(cfg.train_size, cfg.eval_size, train_seed=cfg.seed, test_seed=cfg.test_seed,
                                 min_steps=cfg.min_steps, max_steps=cfg.max_steps, value_range=(0, cfg.value_max),
                                 add_range=(1, cfg.add_max), mul_range=(2, cfg.mul_max), ops=cfg.ops)
        return splits["train"], splits["test"]
    from ..data.gsm8k_aug import load_gsm8k_aug

    data = load_gsm8k_aug(cfg.dataset)
    if cfg.eval_dataset:
        return data, load_gsm8k_aug(cfg.eval_dataset, limit=cfg.eval_size)
    if len(data) <= cfg.eval_size:
        raise ValueError(f"{cfg.dataset}: {len(data)} rows, not enough to hold out eval_size={cfg.eval_size}")
    return data.select(range(len(data) - cfg.eval_size)), data.select(range(len(data) - cfg.eval_size, len(data)))


def encode_dataset(tokenizer, data, cfg: TrainConfig, max_tokens: int | None = None) -> list[Encoded]:
    """Tokenize every row (batched); rows longer than `max_tokens` (teacher length) are dropped."""
    questions = [clean_question(q, cfg.prompt_suffix) for q in data["question"]]
    cots = [prepare_cot(c, cfg.include_last_cot) for c in data["cot"]]
    q_ids = tokenizer(questions)["input_ids"]
    c_ids = tokenizer(cots, add_special_tokens=False)["input_ids"]
    answers: dict[str, tuple[list[int], int]] = {}
    out: list[Encoded] = []
    for q, c, a, cot in zip(q_ids, c_ids, data["answer"], cots):
        a = str(a).strip()
        if a not in answers:
            answers[a] = encode_answer(tokenizer, a, cfg.answer_template)
        ans, d = answers[a]
        enc = Encoded(list(q), list(c) if cot else [], ans, d)
        if max_tokens is None or len(enc.question) + len(enc.cot) + len(enc.answer) <= max_tokens:
            out.append(enc)
    if not out:
        raise ValueError("no training examples left after encoding")
    return out


def lr_factor(progress: float, warmup_ratio: float, min_ratio: float = 0.0) -> float:
    """Linear warm-up over `warmup_ratio` of training, then cosine decay to `min_ratio`."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_ratio > 0 and progress < warmup_ratio:
        return progress / warmup_ratio
    rest = (progress - warmup_ratio) / max(1e-8, 1 - warmup_ratio)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * rest))


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Example indices of optimizer step `step`: consecutive slices of per-epoch seeded permutations."""
    out: list[int] = []
    start = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n)
        perm = _perm(n, seed, epoch)
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset: offset + take])
    return out


_PERM_CACHE: dict[tuple[int, int, int], list[int]] = {}


def _perm(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        _PERM_CACHE.clear()
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        _PERM_CACHE[key] = torch.randperm(n, generator=g).tolist()
    return _PERM_CACHE[key]


def synthetic_options_of(cfg: TrainConfig) -> dict:
    """The `SyntheticOptions` fields of a synthetic run (recorded in codi.json `extra`)."""
    return {"min_steps": cfg.min_steps, "max_steps": cfg.max_steps, "value_range": [0, cfg.value_max],
            "add_range": [1, cfg.add_max], "mul_range": [2, cfg.mul_max], "ops": cfg.ops}


def codi_config_for(cfg: TrainConfig, setup: Setup) -> CodiConfig:
    """The `CodiConfig` a trained model is saved with (special ids, K, prompt options, provenance)."""
    ids = setup.ids
    return CodiConfig(
        pad_id=ids["pad_id"], bot_id=ids["bot_id"], eot_id=ids["eot_id"], num_latents=cfg.num_latents,
        remove_eos=cfg.remove_eos, prompt_suffix=cfg.prompt_suffix, use_prj=True, eos_id=ids["eos_id"],
        family=family_of(setup.model), source="nnsight-codi train", base=cfg.base,
        extra={"answer_template": cfg.answer_template, "train_seed": cfg.seed, "test_seed": cfg.test_seed,
               "dataset": cfg.dataset, **({"synthetic_options": synthetic_options_of(cfg)}
                                          if cfg.dataset == "synthetic" else {})},
    )


def _trainable(setup: Setup) -> list[nn.Parameter]:
    return [p for p in [*setup.model.parameters(), *setup.prj.parameters()] if p.requires_grad]


def make_optimizer(setup: Setup, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, weight decay on matrices only."""
    params = _trainable(setup)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999))


def save_checkpoint(path: Path, setup: Setup, opt: torch.optim.Optimizer, step: int, elapsed: float,
                    cfg: TrainConfig) -> None:
    """Atomically write model, prj and optimizer state plus the step counter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": setup.model.state_dict(), "prj": setup.prj.state_dict(), "optimizer": opt.state_dict(),
                "step": step, "elapsed": elapsed, "config": cfg.to_dict()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, setup: Setup, opt: torch.optim.Optimizer) -> tuple[int, float]:
    """Restore model, prj and optimizer state from `save_checkpoint`; returns `(step, elapsed seconds)`."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} to resume from")
    state = torch.load(path, map_location="cpu", weights_only=False)
    setup.model.load_state_dict(state["model"])
    setup.prj.load_state_dict(state["prj"])
    opt.load_state_dict(state["optimizer"])
    return int(state["step"]), float(state.get("elapsed", 0.0))


def final_model_for_saving(setup: Setup) -> PreTrainedModel:
    """The LM to save: LoRA adapters merged if present."""
    if any(hasattr(m, "lora_a") for m in setup.model.modules()):
        return merge_lora(setup.model)
    return setup.model


def evaluate_all(setup: Setup, cfg: TrainConfig, data, num_latents: int | None = None, teacher: bool = True,
                 zero: bool = True) -> dict:
    """Held-out accuracies: K latents, 0 latents, teacher explicit CoT (each by number of steps)."""
    q, a = list(data["question"]), list(data["answer"])
    steps = list(data["steps"]) if "steps" in data.column_names else None
    k = resolve_num_latents(num_latents, cfg.num_latents)
    common: dict[str, Any] = dict(ids=setup.ids, remove_eos=cfg.remove_eos, prompt_suffix=cfg.prompt_suffix, steps=steps)
    res = evaluate_student(setup.model, setup.prj, setup.tokenizer, q, a, num_latents=k, **common)
    out = {"n": len(q), f"acc_k{k}": res.accuracy, f"acc_k{k}_by_steps": res.by_steps}
    if zero:
        r0 = evaluate_student(setup.model, setup.prj, setup.tokenizer, q, a, num_latents=0, **common)
        out.update({"acc_k0": r0.accuracy, "acc_k0_by_steps": r0.by_steps})
    if teacher:
        rt = evaluate_teacher(setup.model, setup.tokenizer, q, a, ids=setup.ids, prompt_suffix=cfg.prompt_suffix,
                              steps=steps)
        out.update({"acc_teacher_cot": rt.accuracy, "acc_teacher_cot_by_steps": rt.by_steps})
    return out


def train(cfg: TrainConfig, resume: bool = False, data=None, stop_at: int | None = None, *,
          setup: Setup | None = None, examples: list[Encoded] | None = None,
          evaluator: Callable[[Setup, object], dict] | None = None,
          saver: Callable[[Path, PreTrainedModel, Setup], object] | None = None) -> dict:
    """Run CODI training as configured; returns the final metrics (also in `out/metrics.json`).

    Args:
        cfg: the run's configuration.
        resume: continue from `out/checkpoint/state.pt` (the config must match the saved one,
            except `steps`/`minutes`/`progress`/`eval_every`/`checkpoint_every`).
        data: optional `(train, eval)` datasets overriding `cfg.dataset` (tests).
        stop_at: stop (checkpoint, save) after this step although the schedule runs to
            `cfg.steps` (simulates an interruption; resume later with the same config).
        setup, examples: a prebuilt `Setup` and encoded training examples (other objectives
            trained with this loop, e.g. `training.instruct`; default: `build_setup` / `encode_dataset`).
        evaluator: `(setup, eval_data) -> {"accuracy": float, ...}` for the periodic evaluation
            (default: the CODI student with K latents).
        saver: `(out / "model", lm, setup)` writes the final model (default: `save_converted`).
    """
    from tqdm.auto import tqdm

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    if resume:
        saved = type(cfg).load(out / "train_config.json").to_dict()
        mine = cfg.to_dict()
        volatile = {"steps", "minutes", "progress", "eval_every", "checkpoint_every", "log_every", "threads", "out",
                    "extra"}
        diff = sorted(k for k in mine if k not in volatile and saved.get(k) != mine[k])
        if diff:
            raise ValueError(f"cannot resume {out}: config differs from the saved one in {diff}")
    cfg.save(out / "train_config.json")

    setup = setup if setup is not None else build_setup(cfg)
    train_data, eval_data = data if data is not None else load_data(cfg)
    if examples is None:
        examples = encode_dataset(setup.tokenizer, train_data, cfg)
    eval_small = eval_data.select(range(min(cfg.eval_during, len(eval_data))))
    opt = make_optimizer(setup, cfg)
    step, elapsed0 = (load_checkpoint(ckpt, setup, opt) if resume else (0, 0.0))
    total = cfg.steps
    budget = cfg.minutes * 60 if cfg.minutes else None
    ids = setup.ids
    log = (out / "log.jsonl").open("a")
    setup.model.train(); setup.prj.train()
    t0 = time.time() - elapsed0
    bar = tqdm(total=total, initial=step, disable=not cfg.progress, dynamic_ncols=True,
               mininterval=5 if sys.stderr.isatty() else 60)
    sums: dict[str, float] = {}
    count = 0
    history: list[dict] = []

    def progress() -> float:
        p = step / total if total else 0.0
        if budget:
            p = max(p, (time.time() - t0) / budget)
        return p

    while (total is None or step < total) and (budget is None or time.time() - t0 < budget) \
            and (stop_at is None or step < stop_at):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(progress(), cfg.warmup_ratio, cfg.min_lr_ratio)
        idx = batch_indices(step, cfg.batch_size, len(examples), cfg.seed)
        batch = collate([examples[i] for i in idx], pad_id=ids["pad_id"], bot_id=ids["bot_id"], eot_id=ids["eot_id"],
                        eos_id=ids["eos_id"], remove_eos=cfg.remove_eos).to(cfg.device)
        teacher_only = step < cfg.teacher_warmup_steps
        joint = step - cfg.teacher_warmup_steps
        dw = cfg.distill_weight * (min(1.0, (joint + 1) / cfg.distill_warmup_steps) if cfg.distill_warmup_steps else 1.0)
        losses = codi_losses(setup.model, setup.prj, batch, num_latents=cfg.num_latents, pad_id=ids["pad_id"],
                             teacher_weight=cfg.teacher_weight, student_weight=cfg.student_weight,
                             distill_weight=dw, distill_loss=cfg.distill_loss, div_std=cfg.distill_div_std,
                             teacher_only=teacher_only)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(_trainable(setup), cfg.max_grad_norm)
        opt.step()
        step += 1
        bar.update(1)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        count += 1
        if (cfg.log_every and step % cfg.log_every == 0) or step == total or step == stop_at:
            row = {"step": step, "time": round(time.time() - t0, 1), "lr": opt.param_groups[0]["lr"],
                   **{k: v / count for k, v in sums.items()}}
            history.append(row)
            log.write(json.dumps(row) + "\n"); log.flush()
            bar.set_postfix({k: f"{v / count:.3f}" for k, v in sums.items() if k != "loss"})
            sums, count = {}, 0
        if cfg.eval_every and step % cfg.eval_every == 0:
            if evaluator is not None:
                res = evaluator(setup, eval_small)
                setup.model.train()
                bar.write(f"step {step}: held-out (n={len(eval_small)}) " + json.dumps(res))
            else:
                res = evaluate_all(setup, cfg, eval_small, teacher=False, zero=False)
                bar.write(f"step {step}: held-out acc (K={cfg.num_latents}, n={res['n']}) = "
                          f"{res[f'acc_k{cfg.num_latents}']:.3f}")
            row = {"step": step, "time": round(time.time() - t0, 1), "eval": res}
            log.write(json.dumps(row) + "\n"); log.flush()
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt, setup, opt, step, time.time() - t0, cfg)
    bar.close()
    wall = time.time() - t0
    save_checkpoint(ckpt, setup, opt, step, wall, cfg)
    lm = final_model_for_saving(setup)
    if saver is not None:
        saver(out / "model", lm, setup)
    else:
        save_converted(out / "model", lm, setup.tokenizer, setup.prj, codi_config_for(cfg, setup))
    metrics = {"steps": step, "train_seconds": round(wall, 1), "examples_seen": step * cfg.batch_size,
               "n_params_lm": sum(p.numel() for p in lm.parameters()),
               "n_params_prj": sum(p.numel() for p in setup.prj.parameters()), "history": history}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.close()
    return metrics


def export_checkpoint(out: str | Path, dest: str | Path | None = None) -> Path:
    """Write the latest checkpoint of run `out` as a converted CODI directory (default `out/model-stepN`).

    Useful to inspect a run while it trains, or to recover a model from an interrupted run.
    """
    out = Path(out)
    cfg = TrainConfig.load(out / "train_config.json")
    setup = build_setup(cfg)
    state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    setup.model.load_state_dict(state["model"])
    setup.prj.load_state_dict(state["prj"])
    dest = Path(dest) if dest else out / f"model-step{state['step']}"
    return save_converted(dest, final_model_for_saving(setup), setup.tokenizer, setup.prj, codi_config_for(cfg, setup))
