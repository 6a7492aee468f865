"""The CODI latent loop, written once as a state machine over LM calls.

Every LM call the loop makes is one **step** (DESIGN.md's convention, also the occurrence
index `tracer.iter[i]` in a trace):

| step            | input fed                                   | position read          |
|-----------------|---------------------------------------------|------------------------|
| 0  (`bot`)      | the prompt `[q][bot]` (token ids)           | the bot position (-1)  |
| k = 1..K        | `z_k = prj(final-normed h at step k-1)`     | the k-th latent        |
| K+1 (`eot`)     | the eot token (`eot, eos` if not remove_eos)| eot; its logits give answer token 1 |
| K+1+j (`answer{j}`) | greedy answer token j                   | answer token j         |

`LatentLoopState` decides what each call receives (inputs, attention mask, position ids) and
consumes what it returned (final-normed last hidden state, last logits). The two executors —
the traced driver `CodiModel.latent_generate` (one nnsight trace over the whole loop) and
`run_latent_session` (one trace per LM call, the NDIF shape) — only make the calls; neither
holds loop logic of its own.

Masking modes:
- `"exact"` (default): every call gets the running attention mask (left pads masked) and
  position ids counting real tokens only, so batched answers equal one-at-a-time answers.
- `"reference"`: the reference code as published — only the prompt call gets a mask; latent and
  decoding calls get none, and positions count the padding. The prompt's mask is the one
  transformers 4.52 builds on CUDA (`batching.reference_prompt_mask`: a left pad's own, fully
  masked query row attends to every position), passed as a 4D mask so any stack and device
  computes it. Use for parity with published numbers; at batch size 1 both modes are identical.

Host syncs: the only value the loop needs on the host is "has every row finished?". With
`sync_every=1` it is read after every answer token (the reference behaviour, free on a CPU); with
`sync_every=n` only every n-th token, so an accelerator is not stalled each step. Rows that
finished keep emitting eos, and `generated()` cuts the extra columns at the first step where every
row had finished (tracked on the device), so the answer ids are identical either way.

Forking: a loop stopped between two calls (`LoopSnapshot`: the state and the KV cache the next call
extends) can be continued several times, each continuation under its own hooks and even its own
number of latents, without re-running the shared prefix. `LoopSnapshot.branch()` makes the copy:
the state's fields are copied (the small per-row tensors cloned), and the cache gets a new container
whose layers *share* the prefix's key/value tensors. That is cheap and safe because a dynamic cache
never writes into those tensors: each call concatenates (`torch.cat` makes new tensors), so the
first call of a branch already holds tensors of its own, and an in-place edit of the cache by a hook
(KV steering) touches only the branch's copy. Caches that write in place (static, offloaded, or of
an unknown kind) are refused by `fork_cache`. Both executors continue a snapshot (`CodiModel.latent_generate`
takes one in place of the prompts, `session.run_session_branches` forks inside one session);
`hooks.run_branches` groups runs by the step where they first differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from ..models.config import CodiConfig
from ..steps import step_name, step_names
from .batching import extend_mask, next_positions, positions_from_mask, reference_prompt_mask

Masking = Literal["exact", "reference"]
MASKING_MODES: tuple[str, ...] = ("exact", "reference")
__all__ = ["LatentLoopState", "LoopSnapshot", "Masking", "MASKING_MODES", "decode_answers", "fork_cache", "greedy_token",
           "step_name", "step_names"]


@dataclass
class LatentLoopState:
    """What the next LM call receives, and what the loop has produced so far.

    Args:
        input_ids: `Long[Tensor, "batch seq"]` left-padded prompts ending in bot.
        attention_mask: `Long[Tensor, "batch seq"]`, 0 on left padding.
        config: the model's CodiConfig (token ids, prompt format).
        num_latents: K, the number of latent iterations (0 allowed: bot then eot).
        max_new_tokens: bound on greedy answer tokens (the reference uses 256).
        masking: `"exact"` or `"reference"` (module docstring).
        sync_every: read "all rows finished?" on the host only every n-th answer token
            (module docstring); answers do not depend on it.
        mask_dtype: dtype of the 4D prompt mask under reference masking (the model's compute dtype).
    """

    input_ids: Tensor
    attention_mask: Tensor
    config: CodiConfig
    num_latents: int
    max_new_tokens: int = 256
    masking: Masking = "exact"
    sync_every: int = 1
    mask_dtype: torch.dtype = torch.float32
    step: int = 0
    mask: Tensor = field(init=False)
    last_hidden: Tensor | None = field(init=False, default=None)
    next_tokens: Tensor | None = field(init=False, default=None)
    tokens: list[Tensor] = field(init=False, default_factory=list)
    finished: Tensor = field(init=False)
    all_finished_at: Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.masking not in MASKING_MODES:
            raise ValueError(f"masking must be one of {MASKING_MODES}, got {self.masking!r}")
        if self.num_latents < 0:
            raise ValueError(f"num_latents must be >= 0, got {self.num_latents}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {self.sync_every}")
        if self.input_ids.shape != self.attention_mask.shape:
            raise ValueError(
                f"input_ids {tuple(self.input_ids.shape)} and attention_mask "
                f"{tuple(self.attention_mask.shape)} differ in shape"
            )
        self.mask = self.attention_mask
        device = self.input_ids.device
        self.finished = torch.zeros(self.input_ids.shape[0], dtype=torch.bool, device=device)
        self.all_finished_at = torch.zeros((), dtype=torch.long, device=device)  # 0: not yet

    # -- what the executors ask -------------------------------------------------
    @property
    def eot_step(self) -> int:
        return self.num_latents + 1

    @property
    def is_latent_step(self) -> bool:
        return 1 <= self.step <= self.num_latents

    @property
    def done(self) -> bool:
        n = len(self.tokens)
        if n >= self.max_new_tokens:
            return True
        if n == 0 or n % self.sync_every:
            return False
        return bool(self.all_finished_at)  # the one host sync

    def call_kwargs(self, project: Callable[[Tensor], Tensor] | None = None) -> dict:
        """Keyword arguments of the next LM call (without the KV cache).

        `project` maps the last final-normed hidden state `Float[Tensor, "batch 1 dim"]` to the
        next latent input; it is only called on latent steps.
        """
        if self.step == 0:
            if self.masking == "exact":
                return {"input_ids": self.input_ids, "attention_mask": self.mask,
                        "position_ids": positions_from_mask(self.mask)}
            if bool(self.mask.all()):  # nothing padded: the plain causal call, as the reference makes it
                return {"input_ids": self.input_ids, "attention_mask": self.mask}
            return {"input_ids": self.input_ids, "attention_mask": reference_prompt_mask(self.mask, self.mask_dtype)}
        if self.is_latent_step:
            assert self.last_hidden is not None
            embeds = project(self.last_hidden) if project is not None else self.last_hidden
            return self._appended(inputs_embeds=embeds)
        if self.step == self.eot_step:
            batch = self.input_ids.shape[0]
            eot = [self.config.eot_id] if self.config.remove_eos else [self.config.eot_id, self._eos()]
            ids = torch.tensor([eot] * batch, dtype=torch.long, device=self.input_ids.device)
            return self._appended(input_ids=ids)
        assert self.next_tokens is not None
        return self._appended(input_ids=self.next_tokens[:, None])

    def observe(self, last_hidden: Tensor, last_logits: Tensor) -> None:
        """Consume one call's final-normed hidden state `[batch, 1, dim]` and logits `[batch, vocab]`."""
        self._advance_mask()
        self.last_hidden = last_hidden
        if self.step >= self.eot_step:
            nxt = greedy_token(last_logits, self.config.eot_id)
            eos = self.config.eos_id
            if eos is not None:
                nxt = torch.where(self.finished, torch.full_like(nxt, eos), nxt)
                self.finished = self.finished | (nxt == eos)
            self.tokens.append(nxt)
            if eos is not None:  # on the device: the first answer length at which every row is done
                first = (self.all_finished_at == 0) & self.finished.all()
                self.all_finished_at = torch.where(first, len(self.tokens), self.all_finished_at)
            self.next_tokens = nxt
        self.step += 1

    def generated(self) -> Tensor:
        """Answer token ids `Long[Tensor, "batch new"]`; after eos every position holds eos."""
        if not self.tokens:
            return torch.zeros(self.input_ids.shape[0], 0, dtype=torch.long, device=self.input_ids.device)
        tokens = torch.stack(self.tokens, dim=1)
        if self.sync_every > 1:  # drop the all-eos columns decoded past the point every row finished
            cut = int(self.all_finished_at)
            if cut:
                tokens = tokens[:, :cut]
        return tokens

    # -- forking ------------------------------------------------------------------
    def fork(self, num_latents: int | None = None, max_new_tokens: int | None = None) -> LatentLoopState:
        """An independent copy of this state, to be continued under other hooks (or another K).

        Every field is copied (new fields included: a shallow copy of the instance's dict); the answer token list is a new
        list, and the small per-row tensors a continuation could edit in place (`last_hidden`,
        which is the next latent's input when there is no projection, `next_tokens`) are cloned.
        The masks are never edited in place (each call makes a new one), so they are shared.

        `num_latents` may change as long as the steps already run are the same kind (bot and
        latents) under both K: at most `min(K, K') + 1` steps may have run. Then the copy's
        next step is whatever K' makes it (e.g. eot right after latent k: early answering).
        """
        other = _shallow_copy(self)
        other.tokens = list(self.tokens)
        if self.last_hidden is not None:
            other.last_hidden = self.last_hidden.clone()
        if self.next_tokens is not None:
            other.next_tokens = self.next_tokens.clone()
        if num_latents is not None and int(num_latents) != self.num_latents:
            k = int(num_latents)
            if k < 0:
                raise ValueError(f"num_latents must be >= 0, got {k}")
            if self.step > min(k, self.num_latents) + 1:
                raise ValueError(f"cannot fork at step {self.step} to {k} latents: step "
                                 f"{min(k, self.num_latents) + 1} already ran as "
                                 f"{step_name(min(k, self.num_latents) + 1, self.num_latents)}")
            other.num_latents = k
        if max_new_tokens is not None:
            if max_new_tokens < 1:
                raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
            other.max_new_tokens = int(max_new_tokens)
        return other

    # -- internals ----------------------------------------------------------------
    def _eos(self) -> int:
        if self.config.eos_id is None:
            raise ValueError("remove_eos=False needs an eos_id in the CODI config")
        return self.config.eos_id

    def _new_width(self) -> int:
        return 2 if (self.step == self.eot_step and not self.config.remove_eos) else 1

    def _appended(self, **inputs: Tensor) -> dict:
        if self.masking == "reference":
            return inputs
        width = self._new_width()
        inputs["attention_mask"] = extend_mask(self.mask, width)
        inputs["position_ids"] = next_positions(self.mask, width)
        return inputs

    def _advance_mask(self) -> None:
        if self.step > 0:
            self.mask = extend_mask(self.mask, self._new_width())


#: cache layer kinds whose `update` concatenates (never writes into the tensors it already holds)
APPENDING_LAYERS = ("DynamicLayer", "DynamicSlidingWindowLayer")


def fork_cache(cache: Any) -> Any:
    """A copy of a KV cache for one branch: a new container whose layers share the prefix's tensors.

    Safe for the dynamic caches the loop uses (their `update` concatenates, so the branch's first
    call makes tensors of its own and an in-place edit of them never reaches the prefix or a sibling).
    Another cache kind (static, quantised, offloaded) updates in place: forking it is refused.
    `None` (no call made yet) stays `None`. Only builtins: this runs on the NDIF server too, whose
    sandbox refuses the `copy` module (`request_audit`).
    """
    if cache is None:
        return None
    layers = getattr(cache, "layers", None)
    if layers is not None and not getattr(cache, "offloading", False) and all(
            type(layer).__name__ in APPENDING_LAYERS for layer in layers):
        other = _shallow_copy(cache)
        other.layers = [_shallow_copy(layer) for layer in layers]
        return other
    raise TypeError(f"cannot fork a {type(cache).__name__}: forking needs a dynamic KV cache (one that "
                    f"appends by concatenation); run the conditions whole (fork=False)")


def _shallow_copy(obj: Any) -> Any:
    """`copy.copy` for a plain instance, with builtins only (NDIF's sandbox refuses `copy`)."""
    other = object.__new__(type(obj))
    other.__dict__.update(obj.__dict__)
    return other


@dataclass
class LoopSnapshot:
    """A loop stopped between two LM calls: its state and the KV cache the next call extends.

    `latent_generate(snapshot, stop_at=...)` continues it *in place* (the state advances);
    `branch()` first makes an independent copy to continue instead.
    """

    state: LatentLoopState
    cache: Any = None

    def __len__(self) -> int:
        return int(self.state.input_ids.shape[0])

    @property
    def step(self) -> int:
        """The step the next call makes."""
        return self.state.step

    def branch(self, num_latents: int | None = None, max_new_tokens: int | None = None) -> LoopSnapshot:
        """An independent copy (`LatentLoopState.fork`, `fork_cache`) to continue under other hooks."""
        return LoopSnapshot(self.state.fork(num_latents, max_new_tokens), fork_cache(self.cache))


def greedy_token(last_logits: Tensor, eot_id: int) -> Tensor:
    """Greedy next token `Long[Tensor, "batch"]` from `Float[Tensor, "batch vocab"]` logits, eot masked
    (the reference masks only eot). Reads the logits in their own dtype: no full-vocabulary float copy.

    >>> greedy_token(torch.tensor([[0.0, 3.0, 1.0]]), eot_id=1).tolist()
    [2]
    """
    if eot_id < last_logits.shape[-1]:
        logits = last_logits.index_fill(-1, torch.tensor([eot_id], device=last_logits.device), float("-inf"))
    else:
        logits = last_logits
    return logits.argmax(-1)


def decode_answers(tokenizer, tokens: Tensor, eos_id: int | None) -> list[str]:
    """Decode generated ids row by row, stopping before the first eos (special tokens skipped)."""
    texts = []
    for row in tokens.tolist():
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts
