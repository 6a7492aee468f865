"""Train and evaluate a tuned lens on a CODI model: data modes, the optimiser, held-out KL.

Data modes (as the seeds used them):
- `text`: every position of the teacher text `[question][bot][CoT][eot][answer]` (synthetic
  problems' CoT; for GSM8K-style rows the answer field);
- `latents`: the latent steps 1..K of CODI runs (the one latent loop, `run_loop` + `Capture`),
  or the `hidden` of a store that holds every layer;
- `latent:N`: only latent step N.

The objective is tuned-lens's: at each layer l < L, KL(p_final || q_l) to the model's own final
distribution at the same position, averaged over layers and positions; SGD with Nesterov
momentum 0.9, lr = lr_scale·(1 − 0.9), weight decay 1e-3, a linear decay to 0, gradient norm
clipped at 1.0. Training is resumable (`checkpoint.pt` in the output directory while it runs;
removed once the lens is saved, leaving tuned-lens's two files and the `nnsight_codi.json` sidecar).

Example:
    >>> parse_data_mode("latent:3", num_latents=6)
    ('latents', (3,))
    >>> parse_data_mode("latents", num_latents=2)
    ('latents', (1, 2))
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.rows import encode_example
from ..models.fingerprint import WEIGHTS_KEY, model_weights, same_weights
from .logit import _module, final_norm, unembedding
from .tuned import TunedLens

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..tracing.codi_model import CodiModel

DATA_MODES = ("text", "latents", "latent:N")
CHECKPOINT = "checkpoint.pt"


def parse_data_mode(mode: str, num_latents: int) -> tuple[str, tuple[int, ...]]:
    """`text` → ('text', ()); `latents` → ('latents', (1..K)); `latent:N` or the step name
    `latentN` → ('latents', (N,)).
    """
    mode = str(mode).strip()
    if re.fullmatch(r"latent\d+", mode):
        mode = f"latent:{mode[6:]}"
    if mode == "text":
        return "text", ()
    if mode == "latents":
        if num_latents < 1:
            raise ValueError("--data latents needs a model with at least one latent step")
        return "latents", tuple(range(1, num_latents + 1))
    if mode.startswith("latent:"):
        try:
            n = int(mode.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"--data {mode!r}: expected latent:N with an integer N") from None
        if not 1 <= n <= num_latents:
            raise ValueError(f"--data {mode!r}: latent index out of range; the model has latents 1..{num_latents}")
        return "latents", (n,)
    raise ValueError(f"unknown --data mode {mode!r}; use one of {', '.join(DATA_MODES)}")


@dataclass
class LensData:
    """Training/eval positions.

    Attributes:
        hidden: `Float[Tensor, "n layer dim"]` pre-norm residual stream at layers 0..L-1.
        final: `Float[Tensor, "n dim"]` the final-normed last hidden state (logits = W_U · final).
    """

    hidden: Tensor
    final: Tensor

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    def split(self, fraction: float, seed: int = 0) -> tuple[LensData, LensData]:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        cut = int(round(len(self) * (1 - fraction)))
        a, b = perm[:cut], perm[cut:]
        return LensData(self.hidden[a], self.final[a]), LensData(self.hidden[b], self.final[b])


def _lm(model: CodiModel | PreTrainedModel) -> PreTrainedModel:
    return _module(model)


def _final_normed(model: CodiModel | PreTrainedModel, h_last: Tensor) -> Tensor:
    with torch.inference_mode():
        return final_norm(_lm(model))(h_last.to(next(_lm(model).parameters()).dtype)).float()


def teacher_ids(codi: CodiModel, row: dict) -> list[int]:
    """The teacher sequence `[question][bot][CoT][eot][answer]` of one dataset row."""
    cfg = codi.codi_config
    template = cfg.extra.get("answer_template", "The answer is: {answer}")
    answer = str(row.get("answer_value", row["answer"])) if "cot" in row else ""
    if "cot" in row:
        enc = encode_example(codi.tokenizer, row["question"], row["cot"], answer, template=template,
                             prompt_suffix=cfg.prompt_suffix)
        return enc.question + [cfg.bot_id] + enc.cot + [cfg.eot_id] + enc.answer
    q = codi.tokenizer(row["question"].strip())["input_ids"]
    a = codi.tokenizer(" " + str(row["answer"]).strip(), add_special_tokens=False)["input_ids"]
    return list(q) + [cfg.bot_id] + list(a)


@torch.inference_mode()
def collect_text(codi: CodiModel, dataset, batch_size: int = 32, progress: bool = True) -> LensData:
    """Every position of the teacher texts (plain forward passes of the CODI model's LM)."""
    lm = _lm(codi)
    device = next(lm.parameters()).device
    L = int(lm.config.num_hidden_layers)
    limit = codi.max_positions() or 10 ** 9
    seqs = [teacher_ids(codi, dict(row))[:limit] for row in dataset]
    hs, finals = [], []
    for start in tqdm(range(0, len(seqs), batch_size), desc="lens data (text)", disable=not progress):
        chunk = seqs[start:start + batch_size]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), codi.codi_config.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(chunk):  # right padding; masked positions are dropped below
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        out = lm(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
        keep = mask.bool().to(device)
        # HF hidden_states: [0..L-1] are pre-norm block inputs; [L] is already final-normed
        hs.append(torch.stack(out.hidden_states[:L], dim=2)[keep].float().cpu())
        finals.append(out.hidden_states[L][keep].float().cpu())
    return LensData(torch.cat(hs), torch.cat(finals))


@torch.inference_mode()
def collect_latents(codi: CodiModel, dataset, steps: tuple[int, ...], batch_size: int = 32,
                    progress: bool = True) -> LensData:
    """The residual stream at latent `steps` of CODI runs (the one latent loop with a `Capture` hook)."""
    from ..tracing.capture_hook import Capture, assemble
    from ..tracing.loop import run_loop

    L = codi.num_layers
    K = max(steps)
    hook = Capture(["hidden"], range(L + 1), K)
    questions = list(dataset["question"])
    hs = []
    for start in tqdm(range(0, len(questions), batch_size), desc="lens data (latents)", disable=not progress):
        prompts = codi.encode(questions[start:start + batch_size])
        _, records = run_loop(codi, prompts, [hook], num_latents=K, max_new_tokens=1)
        hidden = assemble(records, hook, prompts.attention_mask, 1, codi.hidden_size)["hidden"]
        hs.append(torch.from_numpy(hidden[:, list(steps)]).reshape(-1, L + 1, codi.hidden_size))
    h = torch.cat(hs)
    return LensData(h[:, :L].contiguous(), _final_normed(codi, h[:, L]))


def collect_from_store(codi: CodiModel, ds, steps: tuple[int, ...]) -> LensData:
    """Lens data from a store's `hidden` (it must hold every layer 0..L) at `steps`."""
    if "hidden" not in ds:
        raise ValueError("the store has no `hidden`; capture it with --what hidden")
    L = codi.num_layers
    layers = [int(l) for l in ds["layer"].values]
    if layers != list(range(L + 1)):
        raise ValueError(f"training a tuned lens from a store needs every layer 0..{L}; the store has {layers}")
    if max(steps) >= ds.sizes["step"] - 1:
        raise ValueError(f"latent step {max(steps)} is not in the store (steps {list(ds['step_name'].values)})")
    h = torch.from_numpy(np.asarray(ds["hidden"].isel(step=list(steps)).values, dtype=np.float32))
    h = h.reshape(-1, L + 1, h.shape[-1])
    return LensData(h[:, :L].contiguous(), _final_normed(codi, h[:, L]))


def collect(codi: CodiModel, dataset, mode: str, batch_size: int = 32, progress: bool = True, store=None) -> LensData:
    """Lens data for a data mode (`text`, `latents`, `latent:N`)."""
    kind, steps = parse_data_mode(mode, codi.num_latents)
    if kind == "text":
        return collect_text(codi, dataset, batch_size, progress)
    if store is not None:
        return collect_from_store(codi, store, steps)
    return collect_latents(codi, dataset, steps, batch_size, progress)


def layer_kl(codi: CodiModel, lens: TunedLens | None, hidden: Tensor, final: Tensor) -> Tensor:
    """`Float[Tensor, "layer"]`: mean KL(p_final || q_l) over positions for layers 0..L-1
    (lens None = the logit lens).
    """
    lm = _lm(codi)
    head, norm = unembedding(lm), final_norm(lm)
    logp = torch.log_softmax(head(final).float(), -1)
    out = []
    for layer in range(hidden.shape[1]):
        h = hidden[:, layer]
        if lens is not None:
            h = lens.transform(h, layer)
        logq = torch.log_softmax(head(norm(h)).float(), -1)
        out.append((logp.exp() * (logp - logq)).sum(-1).mean())
    return torch.stack(out)


@dataclass
class TrainConfig:
    """Optimiser settings (tuned-lens's defaults; `steps` and `batch_size` scaled to the data)."""

    steps: int = 300
    batch_size: int = 512
    lr_scale: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    save_every: int = 100


def train_tuned_lens(codi: CodiModel, data: LensData, config: TrainConfig | None = None, out: str | Path | None = None,
                     progress: bool = True, meta: dict[str, Any] | None = None) -> TunedLens:
    """Train translators on `data`; with `out`, checkpoint there and save the lens (resumable)."""
    cfg = config or TrainConfig()
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    if len(data) == 0:
        raise ValueError("no training positions")
    lm = _lm(codi)
    lm.requires_grad_(False)
    meta = {**(meta or {}), "train": dataclasses.asdict(cfg), "positions": len(data)}
    lens = TunedLens.for_model(codi, **meta)
    opt = torch.optim.SGD(lens.parameters(), lr=cfg.lr_scale * (1 - cfg.momentum), momentum=cfg.momentum,
                          nesterov=True, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / cfg.steps))
    start = 0
    ckpt = Path(out) / CHECKPOINT if out is not None else None
    weights = model_weights(codi)
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["meta"] != json.loads(json.dumps(meta)):
            raise ValueError(f"{ckpt} was written by another training configuration; use another --out")
        if not same_weights(state.get(WEIGHTS_KEY), weights):
            raise ValueError(f"{ckpt} was trained on other weights of this model (retrained under the same "
                             "path?); use another --out")
        lens.load_state_dict(state["lens"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = int(state["step"])
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(start):  # the same batches as an uninterrupted run
        torch.randint(len(data), (min(cfg.batch_size, len(data)),), generator=g)
    bar = tqdm(total=cfg.steps, initial=start, desc="tuned lens", disable=not progress)
    for step in range(start, cfg.steps):
        idx = torch.randint(len(data), (min(cfg.batch_size, len(data)),), generator=g)
        with torch.enable_grad():
            loss = layer_kl(codi, lens, data.hidden[idx], data.final[idx]).mean()
            opt.zero_grad()
            loss.backward()
        torch.nn.utils.clip_grad_norm_(lens.parameters(), cfg.clip)
        opt.step()
        sched.step()
        bar.update(1)
        bar.set_postfix(kl=f"{loss.item():.3f}")
        if ckpt is not None and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps):
            ckpt.parent.mkdir(parents=True, exist_ok=True)  # = out
            torch.save({"lens": lens.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step + 1, "meta": json.loads(json.dumps(meta)), WEIGHTS_KEY: weights}, ckpt)
    bar.close()
    if out is not None:
        lens.save(out)
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)  # finished: the lens itself is the result
    return lens


def evaluate_lens(codi: CodiModel, lens: TunedLens, data: LensData, batch: int = 4096) -> list[dict[str, float]]:
    """Per-layer held-out KL to the final distribution for the logit and the tuned lens (nats)."""
    logit = torch.zeros(data.hidden.shape[1])
    tuned = torch.zeros(data.hidden.shape[1])
    with torch.inference_mode():
        for s in range(0, len(data), batch):
            h, f = data.hidden[s:s + batch], data.final[s:s + batch]
            logit += layer_kl(codi, None, h, f) * len(h)
            tuned += layer_kl(codi, lens, h, f) * len(h)
    n = max(len(data), 1)
    return [{"layer": l, "kl_logit": float(logit[l] / n), "kl_tuned": float(tuned[l] / n)}
            for l in range(data.hidden.shape[1])]


def default_steps(positions: int, batch_size: int) -> int:
    """tuned-lens trains 250 steps; with little data, enough steps for ~30 passes, at most 250."""
    return int(min(250, max(50, math.ceil(30 * positions / batch_size))))
