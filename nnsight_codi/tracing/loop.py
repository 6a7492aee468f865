"""The CODI latent loop, written once as a state machine over LM calls.

Every LM call the loop makes is one **step** (the convention of `nnsight_codi.steps`, also the occurrence
index `tracer.iter[i]` in a trace):

| step            | input fed                                   | position read          |
|-----------------|---------------------------------------------|------------------------|
| 0  (`bot`)      | the prompt `[q][bot]` (token ids)           | the bot position (-1)  |
| k = 1..K        | `z_k = prj(final-normed h at step k-1)`     | the k-th latent        |
| K+1 (`eot`)     | the eot token (`eot, eos` if not remove_eos)| eot; its logits give answer token 1 |
| K+1+j (`answer{j}`) | greedy answer token j                   | answer token j         |

The table is CODI's; every latent-reasoning family (`models.family`: CODI, Coconut, …) runs the
same steps with its own markers (Coconut: question, newline, `<|start-latent|>` at step 0, `<|end-latent|>`
at K+1), its own latent input (`prj(h)`, `h` itself) and its own decoding rules; a run may replace
the latent input by a condition's (`Feedback`: the pause control's constant, Soft Thinking's mix).
Rows may stop their latents early (`row_latents`): their later latent columns are masked.

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
`branches.run_branches` groups runs by the step where they first differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import nnsight
import torch
from torch import Tensor

from ..models.codi_config import CodiConfig
from ..models.family import Feedback, LatentFamily, family
from ..steps import resolve_num_latents, step_name, step_names
from .batching import extend_mask, next_positions, positions_from_mask, reference_prompt_mask
from .hooks import Record, StepHook, visit_step

if TYPE_CHECKING:
    from jaxtyping import Float, Int

    from .codi_model import CodiModel

Masking = Literal["exact", "reference"]
MASKING_MODES: tuple[str, ...] = ("exact", "reference")


def check_masking(masking: str) -> Masking:
    """`masking` as a `Masking` mode, or the loop's own `ValueError` for anything else.

    >>> check_masking("reference")
    'reference'
    """
    if masking not in MASKING_MODES:
        raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
    return cast(Masking, masking)
__all__ = ["LatentLoopState", "LoopSnapshot", "Masking", "MASKING_MODES", "decode_answers", "answer_ids", "soft_input",
           "fork_cache", "greedy_token",
           "step_name", "step_names", "run_loop"]


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
        feedback: the latent input of a condition (`models.family.Feedback`: pause, soft), or None for
            the family's own (the `project` callable the executor passes, or `h` itself).
        row_latents: `Long[Tensor, "batch"]`, each row's own number of latents (<= K; exact masking
            only), or None for K in every row. A row's latent columns past its own count are masked.
    """

    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    config: CodiConfig
    num_latents: int
    max_new_tokens: int = 256
    masking: Masking = "exact"
    sync_every: int = 1
    mask_dtype: torch.dtype = torch.float32
    feedback: Feedback | None = None
    row_latents: Tensor | None = None
    step: int = 0
    mask: Tensor = field(init=False)
    rules: LatentFamily = field(init=False)
    last_hidden: Tensor | None = field(init=False, default=None)
    last_logits: Tensor | None = field(init=False, default=None)
    next_tokens: Tensor | None = field(init=False, default=None)
    tokens: list[Tensor] = field(init=False, default_factory=list)
    finished: Tensor = field(init=False)
    all_finished_at: Tensor = field(init=False)

    def __post_init__(self) -> None:
        check_masking(self.masking)
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
        if self.row_latents is not None:
            if self.masking != "exact":
                raise ValueError("per-row numbers of latents need exact masking")
            if tuple(self.row_latents.shape) != (self.input_ids.shape[0],):
                raise ValueError(f"row_latents must have one entry per row, got shape {tuple(self.row_latents.shape)}")
            if bool((self.row_latents < 0).any()) or bool((self.row_latents > self.num_latents).any()):
                raise ValueError(f"row_latents must lie in 0..{self.num_latents}")
        self.rules = family(self.config.latent_family)
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

    def call_kwargs(self, project: Callable[[Tensor], Tensor] | None = None,
                    embeddings: Tensor | None = None) -> dict:
        """Keyword arguments of the next LM call (without the KV cache).

        `project` maps the last final-normed hidden state `Float[Tensor, "batch 1 dim"]` to the
        next latent input (the family's own feedback; None: the hidden state itself); it is only
        called on latent steps, and not at all under a condition's `feedback`. `embeddings`
        (`Float[Tensor, "vocab dim"]`, the input embedding matrix) is what soft feedback mixes.
        """
        if self.step == 0:
            if self.masking == "exact":
                return {"input_ids": self.input_ids, "attention_mask": self.mask,
                        "position_ids": positions_from_mask(self.mask)}
            if bool(self.mask.all()):  # nothing padded: the plain causal call, as the reference makes it
                return {"input_ids": self.input_ids, "attention_mask": self.mask}
            return {"input_ids": self.input_ids, "attention_mask": reference_prompt_mask(self.mask, self.mask_dtype)}
        if self.is_latent_step:
            return self._appended(inputs_embeds=self.latent_input(project, embeddings))
        if self.step == self.eot_step:
            batch = self.input_ids.shape[0]
            eot = [self.config.eot_id] if self.config.remove_eos else [self.config.eot_id, self._eos()]
            ids = torch.tensor([eot] * batch, dtype=torch.long, device=self.input_ids.device)
            return self._appended(input_ids=ids)
        assert self.next_tokens is not None
        return self._appended(input_ids=self.next_tokens[:, None])

    def latent_input(self, project: Callable[[Tensor], Tensor] | None = None,
                     embeddings: Tensor | None = None) -> Tensor:
        """The next latent step's input embeddings `Float[Tensor, "batch 1 dim"]` (see `call_kwargs`)."""
        hidden = self.last_hidden
        assert hidden is not None
        fb = self.feedback
        if fb is None:
            return project(hidden) if project is not None else hidden
        if fb.kind == "constant":
            vector = fb.vector.to(device=hidden.device, dtype=hidden.dtype)  # pyright: ignore[reportAttributeAccessIssue]
            return vector.reshape(1, 1, -1).expand(hidden.shape[0], 1, vector.numel())
        if embeddings is None:
            raise ValueError("soft feedback needs the input embedding matrix (embeddings=...)")
        return soft_input(self.last_logits, embeddings, fb.top_k, fb.temperature)[:, None]  # pyright: ignore[reportArgumentType]

    def observe(self, last_hidden: Tensor, last_logits: Tensor) -> None:
        """Consume one call's final-normed hidden state `[batch, 1, dim]` and logits `[batch, vocab]`."""
        self._advance_mask()
        self.last_hidden = last_hidden
        self.last_logits = last_logits
        rule = getattr(self.feedback, "stop_rule", None)
        if rule is not None and self.step < self.num_latents:  # a condition's per-row stop (Soft Thinking's cold stop)
            rule(self, last_logits)
        if self.step >= self.eot_step:
            nxt = greedy_token(last_logits, self.config.eot_id if self.rules.mask_eot else None)
            eos = self.config.eos_id
            if eos is not None:
                nxt = torch.where(self.finished, torch.full_like(nxt, eos), nxt)
                if len(self.tokens) >= self.rules.eos_stops_from:
                    self.finished = self.finished | (nxt == eos)
            self.tokens.append(nxt)
            if eos is not None:  # on the device: the first answer length at which every row is done
                first = (self.all_finished_at == 0) & self.finished.all()
                self.all_finished_at = torch.where(first, len(self.tokens), self.all_finished_at)
            self.next_tokens = nxt
        self.step += 1

    def stop_rows(self, rows: Tensor) -> None:
        """End the latents of `rows` (`Bool[Tensor, "batch"]`) after the steps run so far (call it from
        `observe`, before the step advances): they keep `self.step` latents, their later latent columns are
        masked (`row_latents`; exact masking only).
        """
        if not bool(rows.any()):
            return
        if self.masking != "exact":
            raise ValueError("per-row stops need exact masking")
        full = torch.full(rows.shape, self.num_latents, dtype=torch.long, device=rows.device)
        current = full if self.row_latents is None else self.row_latents
        self.row_latents = torch.where(rows, torch.clamp(current, max=self.step), current)

    def generated(self) -> Int[Tensor, "batch new"]:
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
            if self.row_latents is not None:
                raise ValueError("cannot change K of a run with per-row numbers of latents")
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

    def _extended(self) -> Tensor:
        """The running mask with this step's new columns: attended, except a latent column of a row
        whose own number of latents (`row_latents`) is already reached.
        """
        width = self._new_width()
        if self.row_latents is not None and self.is_latent_step:
            column = (self.row_latents >= self.step).to(self.mask.dtype)[:, None]
            return torch.cat([self.mask, column], dim=-1)
        return extend_mask(self.mask, width)

    def _appended(self, **inputs: Tensor) -> dict:
        if self.masking == "reference":
            return inputs
        inputs["attention_mask"] = self._extended()
        inputs["position_ids"] = next_positions(self.mask, self._new_width())
        return inputs

    def _advance_mask(self) -> None:
        if self.step > 0:
            self.mask = self._extended()


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


def greedy_token(last_logits: Float[Tensor, "batch vocab"], eot_id: int | None) -> Int[Tensor, " batch"]:
    """Greedy next token `Long[Tensor, "batch"]` from `Float[Tensor, "batch vocab"]` logits, eot masked
    (CODI's reference masks only eot; `eot_id=None` masks nothing, as Coconut's). Reads the logits in
    their own dtype: no full-vocabulary float copy.

    >>> greedy_token(torch.tensor([[0.0, 3.0, 1.0]]), eot_id=1).tolist(), greedy_token(torch.tensor([[0.0, 3.0]]), None).tolist()
    ([2], [1])
    """
    if eot_id is not None and eot_id < last_logits.shape[-1]:
        logits = last_logits.index_fill(-1, torch.tensor([eot_id], device=last_logits.device), float("-inf"))
    else:
        logits = last_logits
    return logits.argmax(-1)


def soft_input(logits: Float[Tensor, "batch vocab"], embeddings: Float[Tensor, "vocab dim"], top_k: int,
               temperature: float = 1.0) -> Float[Tensor, "batch dim"]:
    """Soft Thinking's latent input: the softmax (over the top-`top_k` logits, at `temperature`) weighted
    sum of those tokens' input embeddings.

    >>> e = torch.eye(3)
    >>> soft_input(torch.tensor([[0.0, 0.0, -50.0]]), e, top_k=2).tolist()
    [[0.5, 0.5, 0.0]]
    """
    values, ids = logits.float().topk(top_k, dim=-1)
    weights = torch.softmax(values / temperature, dim=-1)
    return torch.einsum("bk,bkd->bd", weights.to(embeddings.dtype), embeddings[ids])


def answer_ids(row: list[int], eos_id: int | None, stops_from: int = 0) -> list[int]:
    """One row of answer ids cut before its first eos at index >= `stops_from` (the family's rule).

    >>> answer_ids([5, 1, 7], eos_id=1), answer_ids([1, 5, 1, 7], eos_id=1, stops_from=1)
    ([5], [1, 5])
    """
    if eos_id is None:
        return list(row)
    for i, token in enumerate(row):
        if token == eos_id and i >= stops_from:
            return list(row[:i])
    return list(row)


def decode_answers(tokenizer, tokens: Int[Tensor, "batch new"], eos_id: int | None, stops_from: int = 0) -> list[str]:
    """Decode generated ids row by row, stopping before the first eos (at index >= `stops_from`;
    special tokens skipped).
    """
    return [tokenizer.decode(answer_ids(row, eos_id, stops_from), skip_special_tokens=True)
            for row in tokens.tolist()]


# -- the runner: one run of the loop with step hooks, on the executor the model picks -----------------
#
# `run_loop` runs the hooks on either executor: the traced driver (`CodiModel.latent_generate`, local)
# or the NDIF-shaped session (`remote="local"` / `True`, and every run of a base + LoRA-interventions
# model). `branches.run_branches` runs several hook sets (and numbers of latents) over the same prompts as
# branches of one hookless trunk, each forked (`LoopSnapshot`) at the first step where it can differ,
# so the prefix they share is computed once; results equal `run_loop` per hook set exactly.

def run_loop(codi: CodiModel, prompts, hooks: Sequence[StepHook] = (), num_latents: int | None = None,
             max_new_tokens: int = 256, masking: Masking = "exact", remote: bool | str | None = None,
             output_attentions: bool = False, answer_steps: int = 0, grad: bool = False,
             feedback: Feedback | str | None = None) -> tuple[Int[Tensor, "batch new"], list[Record]]:
    """Run the latent loop with `hooks` on steps bot..eot; return `(answer ids, records)`.

    `feedback` puts the run under a latent-input condition (`Feedback`, or a name: "pause", "soft";
    `CodiModel.condition_feedback`) whatever the family; None keeps the prompts' own.

    `answer_steps` > 0 also hands the hooks the first `answer_steps` answer steps (steps
    K+2 .. K+1+answer_steps); the loop must make at least that many calls (e.g. a hook that
    forces the answer tokens, `interventions.ForceAnswer`).

    The loop runs under `torch.inference_mode()` (records are inference tensors); `grad=True`
    runs it under the caller's autograd mode instead, for gradients through the loop.
    """
    prompts = with_feedback(codi, prompts, feedback)
    with contextlib.nullcontext() if grad else torch.inference_mode():
        return _run_loop(codi, prompts, hooks, resolve_num_latents(num_latents, codi.num_latents), max_new_tokens,
                         masking, remote, output_attentions, answer_steps)


def with_feedback(codi: CodiModel, prompts, feedback: Feedback | str | None):
    """`prompts` under the latent-input condition `feedback` (None: unchanged)."""
    if feedback is None:
        return prompts
    if isinstance(feedback, str):
        feedback = codi.condition_feedback(feedback)
        if feedback is None:
            return prompts
    return prompts.with_condition(feedback=feedback)


def _run_loop(codi: CodiModel, prompts, hooks: Sequence[StepHook], k: int, max_new_tokens: int,
              masking: Masking, remote: bool | str | None, output_attentions: bool,
              answer_steps: int) -> tuple[Int[Tensor, "batch new"], list[Record]]:
    if answer_steps < 0:
        raise ValueError(f"answer_steps must be >= 0, got {answer_steps}")
    last = k + 1 + int(answer_steps)
    return codi.executor(remote).run(prompts, list(hooks), k, max_new_tokens, masking, output_attentions, last)


class DirectExecutor:
    """The traced driver (`CodiModel.latent_generate`: one nnsight trace over the whole loop) as the
    executor of `run_loop` / `run_branches`: local runs of a merged CODI model. `CodiModel.executor(None)`
    picks it; a run with `remote`, or of a base + LoRA-interventions model, gets a `session.SessionExecutor`.
    """

    def __init__(self, codi: CodiModel) -> None:
        self.codi = codi

    def run(self, prompts, hooks: Sequence[StepHook], k: int, max_new_tokens: int, masking: Masking,
            output_attentions: bool, last: int) -> tuple[Int[Tensor, "batch new"], list[Record]]:
        """One run with `hooks` on steps <= `last`; no trace at all when there are no hooks."""
        codi = self.codi
        if not hooks:  # nothing to visit: no trace needed
            tokens = codi.latent_generate(prompts, num_latents=k, max_new_tokens=max_new_tokens, masking=masking,
                                          output_attentions=output_attentions, grad=torch.is_grad_enabled())
            return tokens, []
        num_layers = codi.num_layers
        with codi.latent_generate(prompts, num_latents=k, max_new_tokens=max_new_tokens, masking=masking,
                                  output_attentions=output_attentions, grad=torch.is_grad_enabled()) as tracer:
            sink = nnsight.save([])
            for step in tracer.iter[: last + 1]:
                visit_step(codi, step, hooks, sink, num_layers)
            tokens = tracer.result.save()
        return tokens, list(sink)

    def branches(self, prompts, branches, shared, starts, branch_k, bounds, k, max_new_tokens, masking,
                 output_attentions, answer_steps, trunk_needed):
        """The trunk in segments and each fork's branches from copies of it (`_driver_branches`)."""
        return _driver_branches(self.codi, prompts, branches, shared, starts, branch_k, bounds, k, max_new_tokens,
                                masking, output_attentions, answer_steps, trunk_needed)


# -- forking on the traced driver: the trunk in segments (`branches.run_branches` picks the forks) ------


def first_visit(hooks: Sequence[StepHook], first: int, last: int) -> int | None:
    """The first step in `first..last` at which any of `hooks` names a site (None if none does)."""
    for step in range(first, last + 1):
        if any(list(hook.sites(step)) for hook in hooks):
            return step
    return None


def _segment(codi: CodiModel, snapshot: LoopSnapshot, hooks: Sequence[StepHook], stop_at: int | None, last: int,
             output_attentions: bool) -> tuple[Any, list[Record]]:
    """Continue `snapshot` in place up to `stop_at` (None: to the end) with `hooks` on steps <= `last`,
    through the traced driver; a trace only where a hook visits. Returns (tokens or the snapshot, records).
    """
    first = snapshot.step
    end = last + 1 if stop_at is None else min(last + 1, stop_at)
    if first_visit(hooks, first, end - 1) is None:
        return codi.latent_generate(snapshot, stop_at=stop_at, output_attentions=output_attentions,
                                    grad=torch.is_grad_enabled()), []
    num_layers = codi.num_layers
    with codi.latent_generate(snapshot, stop_at=stop_at, output_attentions=output_attentions,
                              grad=torch.is_grad_enabled()) as tracer:
        sink = nnsight.save([])
        for i in tracer.iter[: end - first]:
            visit_step(codi, first + i, hooks, sink, num_layers)
        result = tracer.result.save()
    return result, list(sink)


def _driver_branches(codi: CodiModel, prompts, branches, shared, starts, branch_k, bounds, k, max_new_tokens, masking,
                     output_attentions, answer_steps, trunk_needed):
    """Traced driver: the trunk in segments up to each fork step, each fork's branches from copies of it
    (depth first: one prefix held at a time, about the memory of two runs). Returns (trunk, {branch: run}).
    """
    last = k + 1 + answer_steps
    snapshot = LoopSnapshot(codi.new_loop_state(prompts, k, max_new_tokens, masking))
    trunk_records: list[Record] = []
    runs: dict[int, tuple[Tensor, list[Record]]] = {}
    for start in sorted({d for d in starts if d is not None}):
        snapshot, records = _segment(codi, snapshot, shared, start, last, output_attentions)
        trunk_records += records
        for i, (b, d) in enumerate(zip(branches, starts)):
            if d == start:
                fork = snapshot.branch(branch_k[i], bounds[branch_k[i]])
                runs[i] = _segment(codi, fork, [*b.hooks, *shared], None, branch_k[i] + 1 + answer_steps,
                                   output_attentions)
    tokens = None
    if trunk_needed:
        tokens, records = _segment(codi, snapshot, shared, None, last, output_attentions)
        trunk_records += records
    return (tokens, trunk_records), runs
