"""Train a tiny Coconut with Coconut's stage curriculum, on the synthetic arithmetic of the tiny CODI.

Coconut (Hao et al. 2024, facebookresearch/coconut) trains in stages. Stage 0 is plain chain of thought;
stage s replaces the first s reasoning steps by `s x c_thought` continuous thoughts; after
`max_latent_stage` every step is gone and `max_latent_stage x c_thought` thoughts remain. A thought is the
previous position's last-layer hidden state (after the final norm) fed back as the next input embedding,
with gradients through the whole chain. The sequence a stage trains on:

    question  <|start-latent|>  <|latent|> x n  <|end-latent|>  remaining steps  answer  eos

with the loss on the remaining steps and the answer only. The optimizer is reset at every stage (its
`reset_optimizer`). This module computes the latent passes through the KV cache exactly as the package's
inference loop does (`tracing.loop`), so the trained model is run by the same code it is evaluated with.

Deviations from the reference recipe, for a 1M-parameter model on a shared CPU (TRAINING.md): a fixed
number of optimizer steps per stage instead of epochs; every row of a stage gets `s x c_thought` thoughts
(its `pad_latent_to_max` at every stage); the answer is written as the tiny CODI writes it ("The answer is :
N") because the word-level tokenizer has no `###`.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from ..data.rows import cot_steps
from ..data.scoring import extract_gold, extract_prediction, is_correct
from ..data.synthetic import make_train_test
from ..models.codi_config import CodiConfig
from ..models.converted import save_converted
from ..models.family import COCONUT_TOKENS
from ..models.kv_cache import cache_kwargs, output_cache
from ..models.model_sources import TINY_MODEL_DIR
from ..tracing.batching import left_pad, next_positions, positions_from_mask, right_pad
from .base import embedding_matrix, tiny_base

ANSWER_TEMPLATE = "The answer is : {answer}"


@dataclass
class CoconutTrainConfig:
    """The tiny Coconut recipe (defaults: the shipped model's; `runs/train_tiny_coconut.py`)."""

    out: str = field(default="out/tiny-coconut", metadata={"help": "output directory (model/ and report.json)"})
    seed: int = 3
    test_seed: int = 1_000_003
    train_size: int = 120_000
    eval_size: int = 500
    min_steps: int = 2
    max_steps: int = 3
    value_max: int = 99
    add_max: int = 5
    mul_max: int = 3
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    c_thought: int = 2
    max_latent_stage: int = 3
    stage_steps: tuple[int, ...] = field(default=(1200, 300, 300, 300, 900),
                                         metadata={"help": "optimizer steps of stages 0..max_latent_stage+1"})
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    clip: float = 2.0
    threads: int = 1
    eval_every: int = 300
    eval_limit: int = 200
    init_from: str = field(default="", metadata={"help": "start from this CoT-trained LM's weights (a converted "
                                                          "directory, or 'tiny': the tiny CODI's LM) instead of a "
                                                          "fresh init; stage 0 may then get 0 steps"})

    def __post_init__(self) -> None:
        if len(self.stage_steps) != self.max_latent_stage + 2:
            raise ValueError(f"stage_steps needs {self.max_latent_stage + 2} entries (stages 0..{self.max_latent_stage + 1}),"
                             f" got {len(self.stage_steps)}")
        if self.c_thought < 1 or self.max_latent_stage < 1:
            raise ValueError("c_thought and max_latent_stage must be >= 1")

    @property
    def num_latents(self) -> int:
        """K at the last stage (what the model is evaluated with)."""
        return self.c_thought * self.max_latent_stage


@dataclass
class Example:
    """One encoded problem: question ids, each step's ids, answer ids (+ eos), the gold answer."""

    question: list[int]
    steps: list[list[int]]
    answer: list[int]
    gold: str


def coconut_tokenizer_and_model(cfg: CoconutTrainConfig):
    """The tiny word-level GPT-2 (Fourier number init) + Coconut's three tokens, initialised from `<<`.

    `cfg.init_from` starts from saved weights instead: a CoT-trained tiny GPT-2 (the three rows are then
    added and initialised from `<<`), or a tiny Coconut (which has them: its training goes on).
    """
    model, tok, ids = tiny_base(999, cfg.n_layer, cfg.n_embd, cfg.n_head, seed=cfg.seed, number_init="fourier")
    state = None
    if cfg.init_from:
        directory = TINY_MODEL_DIR if cfg.init_from == "tiny" else Path(cfg.init_from)
        state = load_file(str(directory / "model.safetensors"))
    for token in COCONUT_TOKENS:
        tok.add_tokens(token)
    wte = None if state is None else state.get("transformer.wte.weight")
    coconut = wte is not None and wte.shape[0] == len(tok)  # a tiny Coconut: the three rows are trained
    if state is not None and not coconut:
        _load(model, state, cfg.init_from)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    if coconut and state is not None:
        _load(model, state, cfg.init_from)
        return model, tok, ids
    source = tok.convert_tokens_to_ids("<<")
    with torch.no_grad():
        emb = embedding_matrix(model)
        for token in COCONUT_TOKENS:
            emb[tok.convert_tokens_to_ids(token)] = emb[source]
    return model, tok, ids


def _load(model, state: dict, source: str) -> None:
    """Load a tiny GPT-2 state dict (strict but for the tied head), or fail in one line."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a shape mismatch
        raise ValueError(f"{source}: not a tiny GPT-2 of this shape ({str(err).splitlines()[-1].strip()})") from None
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise ValueError(f"{source}: not a tiny GPT-2 of this shape ({missing[:3]}, {unexpected[:3]})")
    model.tie_weights()


def encode(tok, data) -> list[Example]:
    """Encode a synthetic split for Coconut (question, steps, answer)."""
    out = []
    for q, cot, a in zip(data["question"], data["cot"], data["answer"]):
        steps = [tok(s, add_special_tokens=False)["input_ids"] for s in cot_steps(cot.strip())]
        ans = tok(ANSWER_TEMPLATE.format(answer=str(a).strip()), add_special_tokens=False)["input_ids"]
        out.append(Example(tok(q)["input_ids"], steps, list(ans) + [tok.eos_token_id], str(a).strip()))
    return out


def stage_latents(cfg: CoconutTrainConfig, stage: int) -> tuple[int, int]:
    """`(steps removed, thoughts)` of a stage: s steps and s x c thoughts; past the last, all steps."""
    if stage > cfg.max_latent_stage:
        return 10_000, cfg.num_latents
    return stage, stage * cfg.c_thought


def coconut_loss(model, batch: list[Example], stage: int, cfg: CoconutTrainConfig, ids: dict[str, int]) -> Tensor:
    """Cross-entropy of one stage's batch: prompt call, n thought calls through the KV cache, suffix call."""
    skip, n = stage_latents(cfg, stage)
    pad = ids["pad_id"]
    prompt, mask = left_pad([e.question + [ids["start"]] for e in batch], pad)
    suffix_rows = [[ids["end"]] + [t for s in e.steps[skip:] for t in s] + e.answer for e in batch]
    suffix, suffix_mask = right_pad(suffix_rows, pad)
    out = model(input_ids=prompt, attention_mask=mask, position_ids=positions_from_mask(mask), use_cache=True,
                output_hidden_states=True)
    cache, hidden = output_cache(out), out.hidden_states[-1][:, -1:]
    for _ in range(n):
        ext = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        out = model(inputs_embeds=hidden, attention_mask=ext, position_ids=next_positions(mask, 1),
                    **cache_kwargs(cache), use_cache=True, output_hidden_states=True)
        cache, hidden, mask = output_cache(out), out.hidden_states[-1][:, -1:], ext
    full = torch.cat([mask, suffix_mask], dim=-1)
    positions = next_positions(mask, suffix.shape[1])
    out = model(input_ids=suffix, attention_mask=full, position_ids=positions, **cache_kwargs(cache), use_cache=True)
    logits = out.logits[:, :-1]
    labels = suffix[:, 1:].masked_fill(suffix_mask[:, 1:] == 0, -100)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)


def _optimizer(model, cfg: CoconutTrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=cfg.lr)


def _lr(step: int, total: int, cfg: CoconutTrainConfig) -> float:
    """Per stage: linear warm-up, then cosine to 10% of `lr`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def codi_config_of(tok, ids: dict[str, int], cfg: CoconutTrainConfig) -> CodiConfig:
    """The loop config of the trained model (coconut family, identity feedback)."""
    return CodiConfig(pad_id=ids["pad_id"], bot_id=ids["start"], eot_id=ids["end"], latent_id=ids["latent"],
                      num_latents=cfg.num_latents, remove_eos=True, use_prj=False, eos_id=ids["eos_id"], family="gpt2",
                      latent_family="coconut", source="nnsight-codi train_tiny_coconut", base="tiny-gpt2",
                      extra={"answer_template": ANSWER_TEMPLATE, "dataset": "synthetic", "train_seed": cfg.seed,
                             "test_seed": cfg.test_seed, "c_thought": cfg.c_thought,
                             "max_latent_stage": cfg.max_latent_stage, "tied_head": True,
                             "synthetic_options": {"min_steps": cfg.min_steps, "max_steps": cfg.max_steps,
                                                   "value_range": [0, cfg.value_max], "add_range": [1, cfg.add_max],
                                                   "mul_range": [2, cfg.mul_max], "ops": "+-*/"}})


def accuracy(model, tok, config: CodiConfig, data, num_latents: int, feedback: str | None = None,
             limit: int | None = None) -> float:
    """Exact-match accuracy of the package's loop on `data` (first `limit` rows) with K = `num_latents`."""
    from ..tracing.codi_model import CodiModel

    codi = CodiModel(model, tokenizer=tok, task="text-generation", codi_config=config, prj=nn.Identity())
    rows = list(range(len(data) if limit is None else min(limit, len(data))))
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(rows), 100):
            idx = rows[start:start + 100]
            texts = codi.answer([data["question"][i] for i in idx], num_latents=num_latents, max_new_tokens=12,
                                feedback=feedback)
            correct += sum(is_correct(extract_prediction(t), extract_gold(data["answer"][i])) for i, t in zip(idx, texts))
    return correct / max(1, len(rows))


def train_coconut(cfg: CoconutTrainConfig, stop_at: int | None = None, log=print) -> dict[str, Any]:
    """Run the curriculum; write `out/model` (a converted directory of the coconut family) and `out/report.json`.

    `stop_at` ends after that many optimizer steps in all (tests); returns the report.
    """
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = make_train_test(cfg.train_size, cfg.eval_size, train_seed=cfg.seed, test_seed=cfg.test_seed,
                             min_steps=cfg.min_steps, max_steps=cfg.max_steps, value_range=(0, cfg.value_max),
                             add_range=(1, cfg.add_max), mul_range=(2, cfg.mul_max))
    model, tok, ids = coconut_tokenizer_and_model(cfg)
    ids = {**ids, **{name: tok.convert_tokens_to_ids(token)  # pyright: ignore[reportAttributeAccessIssue]
                     for name, token in zip(("start", "end", "latent"), COCONUT_TOKENS)}}
    config = codi_config_of(tok, ids, cfg)
    train = encode(tok, splits["train"])
    rng = random.Random(cfg.seed)
    order = list(range(len(train)))
    rng.shuffle(order)
    cursor, done, history = 0, 0, []
    start_time = time.perf_counter()
    model.train()
    for stage, steps in enumerate(cfg.stage_steps):
        opt = _optimizer(model, cfg)  # reset at every stage, as the reference's reset_optimizer
        for step in range(steps):
            if stop_at is not None and done >= stop_at:
                break
            if cursor + cfg.batch_size > len(order):
                rng.shuffle(order)
                cursor = 0
            batch = [train[i] for i in order[cursor:cursor + cfg.batch_size]]
            cursor += cfg.batch_size
            for group in opt.param_groups:
                group["lr"] = _lr(step, steps, cfg)
            loss = coconut_loss(model, batch, stage, cfg, ids)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            done += 1
            if done % 50 == 0 or step == steps - 1:
                row = {"step": done, "stage": stage, "loss": float(loss.detach()), "seconds": time.perf_counter() - start_time}
                if cfg.eval_every and (done % cfg.eval_every == 0 or step == steps - 1):
                    model.eval()
                    _, n = stage_latents(cfg, stage)
                    row["accuracy_stage_k"] = accuracy(model, tok, config, splits["test"], n, limit=cfg.eval_limit)
                    model.train()
                history.append(row)
                log(json.dumps(row))
    model.eval()
    seconds = time.perf_counter() - start_time
    save_converted(out / "model", model, tok, nn.Identity(), config)
    report = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
              "steps": done, "train_seconds": seconds, "history": history}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def final_report(model_dir: str | Path, cfg: CoconutTrainConfig, limit: int | None = None) -> dict[str, Any]:
    """Held-out accuracy of a trained tiny Coconut by K (0..K) and under the pause control (K)."""
    from ..loading import load_converted

    codi = load_converted(model_dir)
    splits = make_train_test(10, cfg.eval_size, train_seed=cfg.seed + 10_000, test_seed=cfg.test_seed,
                             min_steps=cfg.min_steps, max_steps=cfg.max_steps, value_range=(0, cfg.value_max),
                             add_range=(1, cfg.add_max), mul_range=(2, cfg.mul_max))
    data = splits["test"]
    model = codi._module
    by_k = {k: accuracy(model, codi.tokenizer, codi.codi_config, data, k, limit=limit) for k in range(cfg.num_latents + 1)}
    pause = accuracy(model, codi.tokenizer, codi.codi_config, data, cfg.num_latents, "pause", limit=limit)
    return {"accuracy_by_k": by_k, "pause_accuracy": pause, "n": len(data) if limit is None else min(limit, len(data))}
