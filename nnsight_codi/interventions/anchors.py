"""Activation patching (clean → corrupted, per layer × step) and thought anchors (ablating each latent).

Both score a fixed answer inside the one loop with `ForceAnswer` (log-probability of the answer, and
whether greedy decoding would produce it) and return numpy arrays for the analysis.

- `activation_patching`: run the clean prompt (record the residual stream at every step × layer
  with `Capture`), then the corrupted prompt with one (step, layer) state patched from the clean run;
  per cell: the clean answer's log-prob and whether the corrupted run now gives the clean answer.
- `thought_anchors`: replace latent z_k with zero, the reference mean, or z_k of a random reference
  problem ("resampled"); per latent and kind: the model's own answer's log-prob, and accuracy
  (greedy). Beside it, the attention score: the mean attention later steps (k+1..eot, averaged over
  layers and heads) pay to latent k's position.

Example:
    >>> ap = activation_patching(codi, clean_qs, corrupt_qs)                  # doctest: +SKIP
    >>> ap["logprob"].shape                                                    # doctest: +SKIP
    (n, K + 2, L + 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..steps import resolve_num_latents, resolve_step
from ..tracing.branches import Branch, run_branches
from ..tracing.capture_hook import Capture
from ..tracing.loop import run_loop
from .ablation import ForceAnswer
from .conditions import score
from .patching import LatentStats, PatchLatent, PatchResidual

if TYPE_CHECKING:
    from ..tracing.codi_model import CodiModel

ABLATIONS = ("zero", "mean", "resampled")


def _batches(n: int, size: int) -> list[list[int]]:
    return [list(range(i, min(n, i + size))) for i in range(0, n, size)]


def _forced(codi: CodiModel, prompts, tokens, hooks, k: int) -> tuple[np.ndarray, np.ndarray]:
    return _forced_branches(codi, prompts, tokens, [hooks], k)[0]


def _forced_branches(codi: CodiModel, prompts, tokens, hook_sets: Sequence[Sequence], k: int,
                     fork: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """`_forced` under each hook set, as branches of one forced, unpatched trunk (`run_branches`):
    each patch re-runs only the steps from the one it edits.
    """
    force = ForceAnswer(tokens, k, codi.codi_config.eos_id, codi.codi_config.eot_id)
    runs = run_branches(codi, prompts, [Branch(list(h)) for h in hook_sets], shared=[force], num_latents=k,
                        max_new_tokens=tokens.shape[1], answer_steps=force.answer_steps, fork=fork)
    return [(force.total(records).numpy(), force.matched(records).numpy()) for _, records in runs]


@torch.inference_mode()
def activation_patching(codi: CodiModel, clean: Sequence[str], corrupted: Sequence[str], batch_size: int = 32,
                        num_latents: int | None = None, max_new_tokens: int = 16,
                        steps: Sequence[int] | None = None, layers: Sequence[int] | None = None,
                        progress: bool = True, fork: bool = True) -> dict[str, Any]:
    """Patch each (step, layer) residual state (last position) from the clean into the corrupted run.

    The patched runs of a batch are branches of the corrupted run, each forked at its step
    (`fork=False`: every patched run made whole; the numbers are the same).

    Returns `logprob` and `recovered` `[example, step, layer]` (clean answer's log-prob; corrupted+patched
    greedy answer == clean answer), `clean_logprob`, `corrupt_logprob`, `corrupt_recovered` `[example]`,
    `clean_text`, `steps`, `layers`.
    """
    k = resolve_num_latents(num_latents, codi.num_latents)
    steps = list(range(k + 2)) if steps is None else [resolve_step(s, k) for s in steps]  # indices or names
    layers = list(range(codi.num_layers + 1)) if layers is None else list(layers)
    n = len(clean)
    if len(corrupted) != n:
        raise ValueError(f"{n} clean prompts but {len(corrupted)} corrupted ones")
    lp = np.zeros((n, len(steps), len(layers)), np.float32)
    rec = np.zeros((n, len(steps), len(layers)), bool)
    clean_lp, corrupt_lp, corrupt_rec = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, bool)
    texts: list[str] = [""] * n
    capture = Capture(["hidden"], layers, k)
    bar = tqdm(total=n * (len(steps) * len(layers) + 3), desc="activation patching", unit="run", disable=not progress)
    for idx in _batches(n, batch_size):
        pc, px = codi.encode([clean[i] for i in idx]), codi.encode([corrupted[i] for i in idx])
        tokens, records = run_loop(codi, pc, [capture], num_latents=k, max_new_tokens=max_new_tokens)
        states = {(int(name.split("/")[1]), step): t for name, step, t in records}   # (layer, step) -> [batch, dim]
        for j, t in zip(idx, codi.decode(tokens)):
            texts[j] = t
        clean_lp[idx], _ = _forced(codi, pc, tokens, [], k)
        cells = [(si, li) for si in range(len(steps)) for li in range(len(layers))]
        runs = _forced_branches(codi, px, tokens, [[]] + [[PatchResidual(steps[si], layers[li],
                                                                         states[(layers[li], steps[si])])]
                                                          for si, li in cells], k, fork)
        corrupt_lp[idx], corrupt_rec[idx] = runs[0]
        for (si, li), (total, matched) in zip(cells, runs[1:]):
            lp[idx, si, li], rec[idx, si, li] = total, matched
        bar.update((3 + len(cells)) * len(idx))
    bar.close()
    return {"logprob": lp, "recovered": rec, "clean_logprob": clean_lp, "corrupt_logprob": corrupt_lp,
            "corrupt_recovered": corrupt_rec, "clean_text": texts, "steps": steps, "layers": layers}


@torch.inference_mode()
def thought_anchors(codi: CodiModel, questions: Sequence[str], golds: Sequence[float], reference_latents: np.ndarray,
                    batch_size: int = 32, num_latents: int | None = None, max_new_tokens: int = 16,
                    kinds: Sequence[str] = ABLATIONS, seed: int = 0, progress: bool = True,
                    fork: bool = True) -> dict[str, Any]:
    """Ablate each latent z_k (k = 1..K) in turn with each of `kinds`.

    A batch's ablated runs (greedy, and forced) are branches of its unablated run, each forked at the
    latent it replaces (`fork=False`: every run made whole; the numbers are the same).

    `reference_latents`: `Float[ndarray, "ref step dim"]` latent inputs of a reference set (the store's
    `latent_input`), for the mean and the resampled ablations. Returns `logprob [example, kind, latent]`
    (the unablated answer's log-prob), `correct [example, kind, latent]` (greedy, vs gold), `base_logprob`,
    `base_correct [example]`, `attention [example, latent]` (mean attention from later steps), `kinds`, `latents`.
    """
    k = resolve_num_latents(num_latents, codi.num_latents)
    bad = [x for x in kinds if x not in ABLATIONS]
    if bad:
        raise ValueError(f"unknown ablation(s) {bad}: use {', '.join(ABLATIONS)}")
    ref = torch.from_numpy(np.asarray(reference_latents, np.float32))
    if ref.dim() != 3 or ref.shape[1] < k + 1:
        raise ValueError(f"reference latents must be [ref, step, dim] with at least {k + 1} steps, got {tuple(ref.shape)}")
    stats = LatentStats(ref.nanmean(0), torch.zeros_like(ref[0]))
    n = len(questions)
    lp = np.zeros((n, len(kinds), k), np.float32)
    correct = np.zeros((n, len(kinds), k), bool)
    base_lp, base_correct, attn = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros((n, k), np.float32)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, ref.shape[0], size=(n, k + 1))                 # resampled source per example, latent
    capture = Capture(["attention"], [], k)
    bar = tqdm(total=n * (2 * len(kinds) * k + 2), desc="thought anchors", unit="run", disable=not progress)
    for idx in _batches(n, batch_size):
        prompts = codi.encode([questions[i] for i in idx])
        with codi.eager_attention():
            tokens, records = run_loop(codi, prompts, [capture], num_latents=k, max_new_tokens=max_new_tokens,
                                       output_attentions=True)
        att = {step: t.float().cpu() for _, step, t in records}            # step -> [batch, keys]
        width = prompts.input_ids.shape[1]
        for latent in range(1, k + 1):
            pos = width + latent - 1
            attn[idx, latent - 1] = torch.stack([att[s][:, pos] for s in range(latent + 1, k + 2)], 1).mean(1).numpy()
        _, _, base_correct[idx] = score(codi, tokens, [golds[i] for i in idx])
        cells, patches = [], []
        for ki, kind in enumerate(kinds):
            for latent in range(1, k + 1):
                if kind == "zero":
                    values = torch.zeros(len(idx), ref.shape[-1])
                elif kind == "mean":
                    values = stats.mean[latent].expand(len(idx), -1).clone()
                else:
                    values = ref[picks[idx, latent], latent]
                cells.append((ki, latent))
                patches.append(PatchLatent(latent, values, kind))
        greedy = run_branches(codi, prompts, [Branch([p]) for p in patches], num_latents=k,
                              max_new_tokens=max_new_tokens, fork=fork)
        forced = _forced_branches(codi, prompts, tokens, [[]] + [[p] for p in patches], k, fork)
        base_lp[idx], _ = forced[0]
        for (ki, latent), (ids, _), (total, _) in zip(cells, greedy, forced[1:]):
            _, _, correct[idx, ki, latent - 1] = score(codi, ids, [golds[i] for i in idx])
            lp[idx, ki, latent - 1] = total
        bar.update((2 + 2 * len(cells)) * len(idx))
    bar.close()
    return {"logprob": lp, "correct": correct, "base_logprob": base_lp, "base_correct": base_correct,
            "attention": attn, "kinds": list(kinds), "latents": list(range(1, k + 1))}
