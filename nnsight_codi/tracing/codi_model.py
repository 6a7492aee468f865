"""`CodiModel`: an nnsight `TransformersModel` whose traced driver is the CODI latent loop.

The merged LM is the wrapped module, so every submodule is addressed exactly as in plain
nnsight (`codi.transformer.h[3]`, `codi.model.layers[3]`), and two children are added for the
latent phase: `codi.prj` (the projection, called at latent steps only) and `codi.step_input`
(an identity every step's input embeddings pass through, so its occurrence i is step i: the
prompt embeddings at step 0, the latent vector z_k at step k, the eot embedding, each answer
token's embedding). Read or edit `codi.step_input.output` to see or change what a step is fed.

Example (one trace over the whole loop; `tracer.iter[i]` is step i — see `nnsight_codi.steps`):

    >>> codi = load_model("tiny")                                   # doctest: +SKIP
    >>> prompts = codi.encode(["Tom has 3 apples ..."])            # doctest: +SKIP
    >>> with codi.latent_generate(prompts, num_latents=6) as tracer:      # doctest: +SKIP
    ...     hidden = nnsight.save([])
    ...     for step in tracer.iter[:"answer1"]:                    # bot, latent1..6, eot
    ...         out = codi.transformer.h[1].output
    ...         if step == "latent3":                               # (or step == 3) a name that is no step raises
    ...             out[:, -1] += 4.0 * direction                   # steer latent3 at layer 1
    ...         hidden.append(out[:, -1].clone())

`tracer.iter` of a local `latent_generate` trace is step-aware (`tracing.step_iter`); saved tensors
carry no autograd history unless `latent_generate(..., grad=True)`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from nnsight import TransformersModel
from nnsight.intervention.envoy import traceable
from torch import Tensor, nn

from ..models.codi_config import CodiConfig
from ..models.family import Feedback, LatentFamily, family
from ..models.kv_cache import cache_kwargs, output_cache
from ..steps import resolve_num_latents
from .batching import left_pad
from .loop import DirectExecutor, LatentLoopState, LoopSnapshot, Masking, decode_answers, step_names
from .session import SessionExecutor
from .step_iter import CodiTracer

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle
    from transformers import PreTrainedModel


@contextmanager
def eager_attention(lm: PreTrainedModel) -> Iterator[None]:
    """Temporarily switch a HF model to eager attention (sdpa returns no attention weights)."""
    previous = lm.config._attn_implementation
    lm.set_attn_implementation("eager")
    try:
        yield
    finally:
        lm.set_attn_implementation(cast(str, previous))  # set on every loaded model


class FinalHidden:
    """Reads the final-normed hidden state of the last position from the LM head's input.

    With `logits_to_keep=1` the LM head sees exactly `hidden_states[-1][:, -1:]` (the final norm's
    output at the last position), so the loop gets what it needs without asking the LM for every
    layer's hidden states or for full-sequence logits.

    >>> lm = torch.nn.Module(); lm.head = torch.nn.Identity(); lm.get_output_embeddings = lambda: lm.head
    >>> with FinalHidden(lm) as final:
    ...     _ = lm.head(torch.arange(6.0).view(1, 3, 2))
    ...     final.take().tolist()
    [[[4.0, 5.0]]]
    """

    def __init__(self, lm: PreTrainedModel) -> None:
        self.head = cast(nn.Module, lm.get_output_embeddings())  # a CODI LM always has its LM head
        self.last: Tensor | None = None
        self._handle: RemovableHandle | None = None

    def _hook(self, module: nn.Module, args: tuple) -> None:
        self.last = args[0][:, -1:]

    def __enter__(self) -> FinalHidden:
        self._handle = self.head.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()

    def take(self) -> Tensor:
        """`Float[Tensor, "batch 1 dim"]` of the call that just ran."""
        value, self.last = self.last, None
        if value is None:
            raise RuntimeError("the LM did not call its output embeddings (get_output_embeddings())")
        return value


def lean_call_kwargs(lm: nn.Module) -> dict:
    """What every loop call asks of the LM beyond the inputs: logits of the last position only
    (`logits_to_keep=1`, when the model's forward takes it), no per-layer hidden states.
    """
    if "logits_to_keep" in inspect.signature(lm.forward).parameters:
        return {"logits_to_keep": 1}
    return {}


@dataclass(frozen=True)
class PromptBatch:
    """Left-padded prompts: `input_ids` and `attention_mask`, `Long[Tensor, "batch seq"]`, and the run's
    condition on the latent loop, if any: `feedback` (pause, soft: `models.family.Feedback`) and
    `row_latents` (`Long[Tensor, "batch"]`, each row's own number of latents). Every executor builds its
    loop state from this object, so a condition reaches all of them (`with_condition`).

    A single object (not tensors) so nnsight hands it to the driver untouched instead of
    re-collating it as a text batch.
    """

    input_ids: Tensor
    attention_mask: Tensor
    feedback: Feedback | None = None
    row_latents: Tensor | None = None

    def with_condition(self, feedback: Feedback | None = None, row_latents: Tensor | None = None) -> PromptBatch:
        """The same prompts under a latent-loop condition (None keeps the current value)."""
        return PromptBatch(self.input_ids, self.attention_mask,
                           self.feedback if feedback is None else feedback,
                           self.row_latents if row_latents is None else row_latents.to(self.input_ids.device))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def _check_prompts(inputs: tuple, kwargs: dict) -> None:
    """`latent_generate` takes `codi.encode(...)`'s PromptBatch (or a LoopSnapshot): say so for text."""
    prompts = inputs[0] if inputs else kwargs.get("prompts")
    if prompts is None and not inputs:
        return  # prompts come later, through tracer.invoke(...)
    if not isinstance(prompts, (PromptBatch, LoopSnapshot)):
        what = "a string" if isinstance(prompts, str) else f"a {type(prompts).__name__}"
        raise TypeError(f"latent_generate takes token ids, not {what}: call codi.latent_generate(codi.encode(questions))"
                        " (a PromptBatch), or continue a LoopSnapshot")


class CodiModel(TransformersModel):
    """A CODI model: merged causal LM + latent projection + `CodiConfig`, traceable with nnsight.

    Build it with `nnsight_codi.load_model(...)` rather than directly. `ndif_repo_id` is the hub id of
    this merged LM as NDIF hosts it (CLI `--ndif-model`), needed by runs with `remote=True`.
    """

    def __init__(self, *args: Any, codi_config: CodiConfig, prj: nn.Module, ndif_repo_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "codi_config", codi_config)
        object.__setattr__(self, "ndif_repo_id", ndif_repo_id)
        ref = next(self._module.parameters())
        self.prj = prj.to(device=ref.device, dtype=ref.dtype).eval()
        self.step_input = nn.Identity()

    def use_ndif_repo(self, repo_id: str | None) -> None:
        """Name the hub id NDIF hosts this model's LM under (for a model loaded without `ndif_repo_id`)."""
        object.__setattr__(self, "ndif_repo_id", repo_id)

    # -- executors: how `loop.run_loop` runs this model ------------------------------
    def executor(self, remote: bool | str | None = None):
        """The executor of a run with `remote`: the traced driver (`loop.DirectExecutor`) for local runs, an
        nnsight session (`session.SessionExecutor`) for `remote="local"`, `True` or a host URL.
        """
        if remote:
            return SessionExecutor(self, remote)
        return DirectExecutor(self)

    def session_model(self, remote: bool | str | None = "local") -> TransformersModel:
        """A stock `TransformersModel` of the merged LM for a session (what NDIF would host).

        For a real NDIF run (`remote=True` or a host URL) it names the deployed repo `ndif_repo_id`
        (CLI `--ndif-model`): NDIF only runs models it hosts. Otherwise it wraps the local module, which
        is what `remote="local"` and local sessions use.
        """
        repo = self.ndif_repo_id
        if remote and remote != "local":
            if not repo:
                raise ValueError("a remote NDIF run needs the hub id of the merged CODI LM deployed there: "
                                 "set codi.ndif_repo_id (CLI --ndif-model), or run a reference checkpoint as its "
                                 "hosted base + LoRA interventions (lora_mode='interventions', CLI --lora-mode)")
            # the client has the tokenizer: no hub look-up for it (a local --ndif-model dir has no pipeline hints)
            return TransformersModel(repo, tokenizer=self.tokenizer, task="text-generation")
        return TransformersModel(self._module, tokenizer=self.tokenizer, task="text-generation")

    # -- shape facts ------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """Number of transformer blocks L (hidden states are indexed 0..L)."""
        return int(self._module.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self._module.config.hidden_size)

    @property
    def num_latents(self) -> int:
        return self.codi_config.num_latents

    @property
    def device(self) -> torch.device:
        return next(self._module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self._module.parameters()).dtype

    def step_names(self, num_latents: int | None = None) -> list[str]:
        return step_names(resolve_num_latents(num_latents, self.num_latents))

    # -- the latent-reasoning family ------------------------------------------------
    @property
    def latent_family(self) -> str:
        """The family whose loop rules this model runs (`models.family`: "codi", "coconut", …)."""
        return self.codi_config.latent_family

    @property
    def family_rules(self) -> LatentFamily:
        """The `LatentFamily` of this model."""
        return family(self.codi_config.latent_family)

    def pause_vector(self) -> Tensor:
        """The pause control's constant input `Float[Tensor, "dim"]`: the input embedding of the family's
        pause token (Coconut: `<|latent|>`; CODI: `bot`).
        """
        token = getattr(self.codi_config, self.family_rules.pause_token)
        if token is None:
            token = self.codi_config.bot_id
        weight = self._module.get_input_embeddings().weight
        return weight[int(token)].detach().clone()

    def pause_feedback(self) -> Feedback:
        """The pause condition of this model (`Feedback.pause(self.pause_vector())`)."""
        return Feedback.pause(self.pause_vector())

    def condition_feedback(self, name: str | None) -> Feedback | None:
        """A named latent-input condition: None / "latent" (the family's own), "pause", "soft"."""
        if name in (None, "", "latent"):
            return None
        if name == "pause":
            return self.pause_feedback()
        if name == "soft":
            return Feedback.soft()
        raise ValueError(f"unknown feedback condition {name!r}: use latent, pause or soft")

    # -- prompts ----------------------------------------------------------------
    def prompt_ids(self, question: str) -> list[int]:
        """Token ids the model sees for one question: `[q (+suffix)] (+eos) bot` (codi.md §1); Coconut:
        `[q, newline] <|start-latent|>` (the family's question rules, `models.family`).
        """
        cfg = self.codi_config
        rules = self.family_rules
        text = question.strip().replace("  ", " ") if rules.clean_question else question
        text = text + rules.question_suffix + cfg.prompt_suffix
        ids = list(self.tokenizer(text)["input_ids"])
        if not cfg.remove_eos:
            if cfg.eos_id is None:
                raise ValueError("remove_eos=False needs an eos_id in the CODI config")
            ids.append(cfg.eos_id)
        ids.append(cfg.bot_id)
        return ids

    def encode(self, questions: Sequence[str], feedback: Feedback | str | None = None) -> PromptBatch:
        """Left-padded prompts (ids + attention mask, on the model's device) for `latent_generate`,
        under the latent-input condition `feedback` (a `Feedback`, or a name: `condition_feedback`).
        """
        if isinstance(questions, str):
            questions = [questions]
        ids, mask = left_pad([self.prompt_ids(q) for q in questions], self.codi_config.pad_id)
        if feedback is None or isinstance(feedback, str):
            feedback = self.condition_feedback(feedback)
        return PromptBatch(ids.to(self.device), mask.to(self.device), feedback)

    def decode(self, tokens: Tensor) -> list[str]:
        """Answer texts from `latent_generate`'s token ids (cut at eos, by the family's rule)."""
        return decode_answers(self.tokenizer, tokens, self.codi_config.eos_id, self.family_rules.eos_stops_from)

    def trace(self, *inputs: Any, tracer_cls: Any = None, **kwargs: Any):
        """The nnsight `trace`; for `latent_generate` it checks the prompts first (token ids from
        `codi.encode`, not text) and, run locally, makes `tracer.iter` step-aware (`CodiTracer`).
        """
        if getattr(kwargs.get("fn"), "__name__", None) == "latent_generate":
            _check_prompts(inputs, kwargs)
            if tracer_cls is None and kwargs.get("backend") is None and not kwargs.get("remote"):
                tracer_cls = CodiTracer
        return super().trace(*inputs, tracer_cls=tracer_cls, **kwargs)

    # -- nnsight batching: a PromptBatch goes to the driver as it is -------------
    def _batch_size(self, *inputs: Any, **kwargs: Any) -> int:
        if inputs and isinstance(inputs[0], (PromptBatch, LoopSnapshot)):
            return len(inputs[0])
        return super()._batch_size(*inputs, **kwargs)

    def _batch(self, invokes: list, fn: Any) -> tuple:
        first = invokes[0][0][0] if invokes and invokes[0][0] else None
        if isinstance(first, (PromptBatch, LoopSnapshot)):
            if len(invokes) > 1:
                raise NotImplementedError(
                    "latent_generate takes one PromptBatch per trace: put all questions in one codi.encode(...)"
                )
            inputs, kwargs = invokes[0]
            return tuple(inputs), dict(kwargs)
        return super()._batch(invokes, fn)

    # -- the loop ---------------------------------------------------------------
    def max_positions(self) -> int | None:
        cfg = self._module.config
        return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)

    def new_loop_state(self, prompts: PromptBatch, num_latents: int | None = None,
                       max_new_tokens: int = 256, masking: Masking = "exact",
                       sync_every: int | None = None) -> LatentLoopState:
        """The loop's state for `prompts` (K: `num_latents`, None for the model's); `sync_every` defaults to 1 on a CPU (host reads are free
        there) and 8 on an accelerator (one host sync per 8 answer tokens; answers identical).
        """
        k = resolve_num_latents(num_latents, self.num_latents)
        if sync_every is None:
            sync_every = 1 if prompts.input_ids.device.type == "cpu" else 8
        limit = self.max_positions()
        if limit is not None:
            room = limit - prompts.input_ids.shape[1] - max(k, 0) - 2
            if room < 1:
                raise ValueError(f"prompt of {prompts.input_ids.shape[1]} tokens + {k} latents does not fit "
                                 f"the model's {limit} positions")
            if max_new_tokens > room:
                max_new_tokens = room  # answers stop at eos long before; the context ends here
        return LatentLoopState(
            input_ids=prompts.input_ids, attention_mask=prompts.attention_mask, config=self.codi_config,
            num_latents=k, max_new_tokens=max_new_tokens, masking=masking, sync_every=sync_every,
            mask_dtype=self.dtype, feedback=getattr(prompts, "feedback", None),
            row_latents=getattr(prompts, "row_latents", None),
        )

    def _project(self, hidden: Tensor) -> Tensor:
        return self.prj(hidden, hook=True) if self.codi_config.use_prj else hidden

    def _soft_embeddings(self, state: LatentLoopState) -> Tensor | None:
        """The input embedding matrix, for a run under soft feedback only."""
        if state.feedback is not None and state.feedback.kind == "soft":
            return self._module.get_input_embeddings().weight
        return None

    def _step_inputs(self, kwargs: dict) -> dict:
        """Route every step's input embeddings through `step_input`, so occurrence i is step i."""
        ids = kwargs.pop("input_ids", None)
        embeds = kwargs.pop("inputs_embeds", None)
        if embeds is None:
            embeds = self._module.get_input_embeddings()(ids)
        kwargs["inputs_embeds"] = self.step_input(embeds, hook=True)
        return kwargs

    @traceable
    def latent_generate(self, prompts: PromptBatch | LoopSnapshot, num_latents: int | None = None,
                        max_new_tokens: int = 256, masking: Masking = "exact",
                        output_attentions: bool = False, full_outputs: bool = False,
                        stop_at: int | None = None, grad: bool = False) -> Tensor | LoopSnapshot:
        """Run prompt → bot → K latents → eot → greedy answer; return answer ids `[batch, new]`.

        Use as `with codi.latent_generate(codi.encode(questions)) as tracer:` to trace it (each LM call is one
        step, `tracer.iter[i]` = step i), or call it directly for the answers. With
        `output_attentions=True` every call returns attention weights (use eager attention:
        `codi.eager_attention()`).

        Each call asks the LM only for what the loop reads: the last position's logits and no
        per-layer hidden states (`codi.output.logits` is `[batch, 1, vocab]`, `hidden_states` is
        None; read layers through their modules). `full_outputs=True` restores full-sequence
        logits and all hidden states in `codi.output`. Answers are the same either way.

        Forking: `stop_at=s` stops before step s and returns a `LoopSnapshot` (state + KV cache)
        instead of the answer ids; passing a snapshot as `prompts` continues it in place from its
        next step (its own K, answer bound and masking; those arguments are then ignored), so in
        a trace `tracer.iter[i]` is step `snapshot.step + i`. Continue `snapshot.branch()` to keep
        the snapshot for another continuation (`branches.run_branches` does this).

        The loop runs without autograd (values saved in a trace carry no graph) unless `grad=True`.
        """
        _check_prompts((prompts,), {})
        if isinstance(prompts, LoopSnapshot):
            state, cache = prompts.state, prompts.cache
        else:
            state, cache = self.new_loop_state(prompts, num_latents, max_new_tokens, masking), None
        lm = self._module
        extra = {"output_hidden_states": True} if full_outputs else lean_call_kwargs(lm)
        if output_attentions:
            extra["output_attentions"] = True
        with FinalHidden(lm) as final, torch.set_grad_enabled(grad):
            while not state.done and (stop_at is None or state.step < stop_at):
                kwargs = self._step_inputs(state.call_kwargs(project=self._project, embeddings=self._soft_embeddings(state)))
                out = lm(**kwargs, **cache_kwargs(cache), use_cache=True, **extra)
                cache = output_cache(out)
                state.observe(final.take(), out.logits[:, -1])
        if stop_at is not None:
            if isinstance(prompts, LoopSnapshot):
                prompts.cache = cache
                return prompts
            return LoopSnapshot(state, cache)
        if isinstance(prompts, LoopSnapshot):
            prompts.cache = cache
        return state.generated()

    def eager_attention(self):
        """Context manager: eager attention while inside (needed for attention weights)."""
        return eager_attention(self._module)

    @torch.inference_mode()
    def answer(self, questions: Sequence[str], num_latents: int | None = None, max_new_tokens: int = 256,
               masking: Masking = "exact", feedback: Feedback | str | None = None) -> list[str]:
        """Answer texts for a batch of questions (no tracing), under the latent-input condition `feedback`."""
        tokens = self.latent_generate(self.encode(questions, feedback), num_latents=num_latents,
                                      max_new_tokens=max_new_tokens, masking=masking)
        return self.decode(tokens)
