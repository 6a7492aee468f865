r"""The lm-eval model `nnsight-codi`: any model this project loads, evaluated by lm-eval's harness.

It follows lm-eval's own `hf` model (`HFLM`) request contract, by subclassing lm-eval's
`TemplateLM` and using lm-eval's helpers where HFLM does:

- `loglikelihood`: lm-eval's `_encode_pair` (the context's trailing whitespace moved into the
  continuation, the whole string encoded and split at the context's length; an empty context is
  the prefix token — BOS, else EOS), left truncation to `max_length + 1` tokens, `is_greedy` =
  every continuation token is the argmax; `loglikelihood_rolling`: lm-eval's
  `get_rolling_token_windows` + `make_disjoint_window` over `max_length`; requests ordered and
  batched by lm-eval's `Collator` as HFLM orders them; `generate_until`: requests grouped by
  generation kwargs (`normalize_gen_kwargs`), contexts left-truncated to `max_length -
  max_gen_toks`, the EOS string added to the stop sequences, the output cut by lm-eval's
  `postprocess_generated_text`. `device` is handled as HFLM handles it (lm-eval's CLI default
  `cuda:0` falls back to the CPU on a machine without CUDA). Tested equal to `hf` (loglikelihoods
  within 1e-4, rolling loglikelihoods, greedy generations) with a byte-level BPE tokenizer.
- a **plain HF LM** (instruct): forwards and generation through nnsight with an optional
  steering condition (`condition=single:L:C | continuous:L:C`, `vectors=STORE`; steered at every
  position for `continuous`, at the context only for `single`) and an optional prompt mode that
  wraps each context in the chat template with the CoT / direct instruction
  (`prompt_mode=cot|direct`; default `raw`: the context as lm-eval built it, e.g. with
  `--apply_chat_template`).
- a **CODI model**: `generate_until` through its latent loop (`evaluation.generate_answers`, i.e.
  `loop.run_loop`), so accuracies equal `nnsight-codi eval`'s; `loglikelihood` is refused with
  an explanation (a CODI answer is conditioned on latents the context alone does not give).

Both run locally or through NDIF (`remote=local|ndif|URL`; for CODI either `ndif_model=REPO`, a
deployed merged checkpoint, or `lora_mode=interventions`, the hosted base model + the LoRA adapter
as interventions; `base=BASE` as `--base`).

Importing this module fills lm-eval's model registry before adding `nnsight-codi` to it, so
lm-eval's own models (`hf`, `vllm`, …) still resolve afterwards.

Example::

    nnsight-codi lm-eval --model nnsight-codi --model_args model=tiny --tasks nnsight_codi_synthetic
    nnsight-codi lm-eval --model_args model=tiny-instruct,prompt_mode=direct,condition=continuous:2:4,vectors=V \
        --tasks nnsight_codi_synthetic --limit 50
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import lm_eval.models  # noqa: F401  (fills lm-eval's lazy registry first: `hf` & co. stay registered)
import nnsight
import torch
from lm_eval import utils as lm_utils
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import (
    Collator,
    handle_stop_sequences,
    has_bos_prefix,
    normalize_gen_kwargs,
    postprocess_generated_text,
    resolve_max_length,
)
from tqdm.auto import tqdm

from ..evaluation import generate_answers
from ..loading import load_instruct_model, load_model
from ..tracing.batching import positions_from_mask
from ..tracing.codi_model import CodiModel
from ..tracing.hooks import visit_step
from ..tracing.loop import Masking, check_masking
from ..tracing.plain_lm import PlainLM
from ..tracing.remote import check_remote, ndif_errors, remote_kwargs, remote_value

if TYPE_CHECKING:
    from nnsight import TransformersModel

CODI_LOGLIKELIHOOD = ("loglikelihood is not defined for a CODI model here: its answer is conditioned on latent "
                      "thoughts generated after the question, which a (context, continuation) score skips. "
                      "Use generate_until tasks (gsm8k, nnsight_codi_gsm8k_local, nnsight_codi_synthetic)")
DEFAULT_MAX_LENGTH = 2048  # HFLM's, for a model whose config and tokenizer give no length


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def lm_eval_device(device: str | None) -> str:
    """The device HFLM would use for `device` on one process: a name it knows (`cuda`, `cpu`,
    `cuda:N` for an existing GPU, `mps`) as given, anything else (None, lm-eval's CLI default
    `cuda:0` on a machine without that GPU) → `cuda` if available, else `cpu`.

    Example:
        >>> lm_eval_device("cpu")
        'cpu'
    """
    gpus = torch.cuda.device_count()
    known = {"cuda", "cpu", "mps", "mps:0", "auto"} | {f"cuda:{i}" for i in range(gpus)}
    if device and str(device) in known and str(device) != "auto":
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "", "None") else int(value)


@register_model("nnsight-codi")
class NnsightCodiLM(TemplateLM):
    """lm-eval model over `nnsight_codi.loading.load_model` (CODI or plain HF LM)."""

    backend = "causal"

    def __init__(self, model: str = "tiny", device: str | None = None, dtype: str = "float32",
                 batch_size: int | str = 16, remote: str | None = None, ndif_model: str | None = None,
                 vectors: str | None = None, condition: str = "direct", prompt_mode: str = "raw",
                 num_latents: int | None = None, masking: str = "exact", max_gen_toks: int = 256, seed: int = 0,
                 progress: Any = True, base: str | None = None, lora_mode: str = "merged",
                 max_length: int | None = None, add_bos_token: Any = None, prefix_token_id: int | None = None,
                 loaded: Any = None, max_batch_size: Any = None, **unknown: Any) -> None:
        if unknown:  # a misspelt model arg would otherwise run the wrong experiment silently
            valid = sorted(p for p in inspect.signature(type(self).__init__).parameters
                           if p not in ("self", "unknown", "loaded", "max_batch_size"))
            raise ValueError(f"unknown nnsight-codi model arg(s) {sorted(unknown)}; valid: {valid}")
        super().__init__()
        from ..cot.cot_steering import parse_condition
        self._batch_size = int(batch_size) if str(batch_size).isdigit() else 16  # "auto": a fixed 16
        if self._batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.remote = check_remote(remote_value(remote) if remote not in (None, "", "None") else None)
        self.condition = parse_condition(condition)
        if prompt_mode not in ("raw", "cot", "direct"):
            raise ValueError(f"prompt_mode must be raw, cot or direct, got {prompt_mode!r}")
        self.prompt_mode, self._max_gen_toks, self.seed = prompt_mode, int(max_gen_toks), int(seed)
        self.num_latents = _optional_int(num_latents)
        self.masking: Masking = check_masking(masking)
        self.progress = _bool(progress)
        self._max_length = _optional_int(max_length)
        self.add_bos_token = None if add_bos_token in (None, "", "None") else _bool(add_bos_token)
        self.custom_prefix_token_id = _optional_int(prefix_token_id)
        device = lm_eval_device(device)
        if loaded is not None:
            self.model = loaded
        elif self.remote and self.remote != "local" and ndif_model is None and lora_mode == "merged":
            self.model = load_instruct_model(model, device, dtype, self.remote)
        else:
            self.model = load_model(model, device=device, dtype=dtype, base=base or None, lora_mode=lora_mode,
                                    ndif_repo_id=ndif_model or None)
        self.is_codi = isinstance(self.model, CodiModel)
        if ndif_model and loaded is not None and self.is_codi:
            self.model.use_ndif_repo(ndif_model)
        if self.remote and self.is_codi:  # base + LoRA interventions:
            self.model.executor(self.remote)  # check the (hosted) base's weights before any work
        self.vectors = None
        if self.is_codi:
            if self.condition.name != "direct" or prompt_mode != "raw":
                raise ValueError("steering conditions and prompt modes are for plain instruct LMs, not CODI models")
        else:
            from ..cot.cot_accuracy import check_condition
            from ..cot.vector_estimation import load_vectors

            if vectors:
                self.vectors = load_vectors(vectors)
            if prompt_mode != "raw" or self.condition.schedule is not None:
                check_condition(self.model, self.condition, self.vectors)
            if self.condition.name == "cot":
                raise ValueError("condition=cot is prompt_mode=cot; conditions here are direct, single:L:C, continuous:L:C")
        self._device = torch.device(device)

    # -- lm-eval's model properties (as HFLM defines them) ------------------------------------------
    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "nnsight-codi")).replace("/", "__")

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self.custom_prefix_token_id is not None:
            return self.custom_prefix_token_id
        tok = self.tokenizer
        pid = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if pid is None:
            raise ValueError("the tokenizer has no bos/eos token to condition an empty context on")
        return int(pid)

    @property
    def max_length(self) -> int:
        if self._max_length:
            return self._max_length
        config = self.model._module.config if hasattr(self.model, "_module") else None
        return resolve_max_length(config, self.tokenizer, default=DEFAULT_MAX_LENGTH)

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None,
                   **kwargs: Any) -> list[int]:
        """HFLM's `tok_encode`: the tokenizer's default special tokens (or `add_bos_token`), none
        when the string already starts with the prefix token's text.
        """
        special: dict[str, bool] = {}
        if add_special_tokens is not None:
            special = {"add_special_tokens": add_special_tokens}
        elif self.add_bos_token is not None:
            special = {"add_special_tokens": self.add_bos_token}
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        encoding = self.tokenizer.encode(string, **special)
        return encoding[-left_truncate_len:] if left_truncate_len else encoding

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    # -- helpers -------------------------------------------------------------------------------
    def _hooks(self, context_mask=None) -> list:
        from ..cot.cot_steering import steering_for

        c = self.condition
        mask = context_mask if c.schedule == "single" else None  # single: the prompt (context) only
        hook = steering_for(c, self.vectors, positions=mask)
        return [] if hook is None else [hook]

    def _context(self, context: str) -> str:
        """The context as the model sees it: as given (`raw`), or inside the chat template with the
        CoT / direct instruction.
        """
        if self.prompt_mode == "raw" or self.is_codi:
            return context
        from ..cot.prompts import build_prompt

        return build_prompt(self.tokenizer, context, self.prompt_mode)

    # -- lm-eval API -----------------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        if self.is_codi:
            raise NotImplementedError(CODI_LOGLIKELIHOOD)
        if self.prompt_mode != "raw":
            requests = [Instance(r.request_type, r.doc, (self._context(r.args[0]), r.args[1]),  # pyright: ignore[reportGeneralTypeIssues]  (lm-eval types args as tuple[()])
                                 r.idx)
                        for r in requests]
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not self.progress)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        if self.is_codi:
            raise NotImplementedError(CODI_LOGLIKELIHOOD)
        windows: list[tuple[int, tuple]] = []
        for i, req in enumerate(requests):
            for ctx, cont in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(req.args[0]), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((i, (None, ctx, cont)))
        scores = self._loglikelihood_tokens([w for _, w in windows], disable_tqdm=True) if windows else []
        totals = [0.0] * len(requests)
        for (i, _), (lp, _) in zip(windows, scores, strict=True):
            totals[i] += lp
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), total)
        return totals

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        """`(sum log p(continuation | context), is_greedy)` per `(key, context ids, continuation ids)`:
        left-truncated to `max_length + 1` tokens as HFLM does, ordered and batched by lm-eval's
        `Collator` (longest first), one traced forward per batch.
        """
        if self.is_codi:
            raise NotImplementedError(CODI_LOGLIKELIHOOD)
        limit = self.max_length + 1
        pairs = []
        for key, ctx, cont in requests:
            if not cont:
                raise ValueError(f"empty continuation in a loglikelihood request {key!r}")
            if len(cont) > self.max_length:
                raise ValueError(f"a continuation of {len(cont)} tokens exceeds the model's context ({self.max_length})")
            ctx = list(ctx)[-(limit - len(cont)):]  # what HFLM keeps: (ctx + cont)[-(max_length + 1):]
            pairs.append((key, ctx, list(cont)))
        order = Collator(pairs, sort_fn=lambda r: (-(len(r[1]) + len(r[2])), tuple(r[1] + r[2])))
        res = []
        bar = tqdm(total=len(pairs), desc="nnsight-codi loglikelihood", disable=disable_tqdm or not self.progress)
        for chunk in order.get_batched(n=self.batch_size):
            for (key, _, _), answer in zip(chunk, continuation_logprobs(
                    self.model, [(c, x) for _, c, x in chunk], self._hooks, self.remote), strict=True):
                res.append(answer)
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, answer)
            bar.update(len(chunk))
        bar.close()
        return order.get_original(res)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        order = Collator([req.args for req in requests],
                         sort_fn=lambda r: (-len(self.tok_encode(self._context(r[0]))), r[0]),
                         group_by="gen_kwargs", group_fn=lambda r: r[1])
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False) if self.eot_token_id is not None else None
        res = []
        bar = tqdm(total=len(requests), desc="nnsight-codi generate", disable=disable_tqdm or not self.progress)
        for b, chunk in enumerate(order.get_batched(n=self.batch_size)):
            contexts, all_kwargs = zip(*chunk, strict=True)
            kwargs = normalize_gen_kwargs(all_kwargs[0], self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_new = int(kwargs.pop("max_gen_toks"))
            texts = self._generate(list(contexts), max_new, greedy=not _bool(kwargs.get("do_sample", False)),
                                   seed=self.seed * 1_000_003 + b)
            for context, gen_kwargs, text in zip(contexts, all_kwargs, texts, strict=True):
                text = postprocess_generated_text(text, until, None)
                res.append(text)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            bar.update(len(chunk))
        bar.close()
        return order.get_original(res)

    def _generate(self, contexts: list[str], max_new: int, greedy: bool, seed: int = 0) -> list[str]:
        if self.is_codi:
            return generate_answers(self.model, contexts, batch_size=len(contexts), num_latents=self.num_latents,
                                    max_new_tokens=max_new, masking=self.masking, remote=self.remote, progress=False)
        from ..cot.generation import generate_ids

        room = self.max_length - max_new
        if room < 1:
            raise ValueError(f"max_gen_toks ({max_new}) must be less than the model's context ({self.max_length})")
        prompts = [self.tok_encode(self._context(c), left_truncate_len=room) for c in contexts]
        gens, _ = generate_ids(self.model, prompts, self._hooks(), max_new_tokens=max_new, greedy=greedy,
                               seed=seed, remote=self.remote)
        return [self.tok_decode(g) for g in gens]


def continuation_logprobs(model: TransformersModel, pairs, hooks_for, remote=None) -> list[tuple[float, bool]]:
    """`(sum log p(continuation | context), greedy?)` per `(context ids, continuation ids)` pair, in one
    left-padded traced forward over `(context + continuation)[:-1]`; `hooks_for(context_mask)` gives
    the step hooks (steering).
    """
    lm = PlainLM.of(model)
    seqs = [(list(c) + list(x))[:-1] for c, x in pairs]
    ids, mask = lm.pad(seqs)
    width = ids.shape[1]
    context_mask = torch.zeros_like(mask, dtype=torch.bool)
    targets = torch.zeros_like(ids)
    scored = torch.zeros_like(mask, dtype=torch.bool)  # positions whose next token is a continuation token
    for row, (c, x) in enumerate(pairs):
        context_mask[row, width - len(seqs[row]): width - len(seqs[row]) + len(c)] = True
        scored[row, width - len(x):] = True
        targets[row, width - len(x):] = torch.tensor(x)
    hooks = hooks_for(context_mask)
    device, layers = lm.device, lm.num_layers  # plain values inside the trace
    with ndif_errors(remote, ""):
        with model.trace(input_ids=ids.to(device), attention_mask=mask.to(device),
                         position_ids=positions_from_mask(mask).to(device), **remote_kwargs(remote)):
            sink = nnsight.save([])
            visit_step(model, 0, hooks, sink, layers)
            logits = model.output.logits
            t = targets.to(logits.device)
            lp = logits.float().log_softmax(-1).gather(-1, t[..., None])[..., 0]
            hit = logits.argmax(-1) == t
            scores = nnsight.save(lp.detach().cpu())
            greedy = nnsight.save(hit.cpu())
    out = []
    for row in range(len(pairs)):
        sel = scored[row]
        out.append((float(scores[row][sel].sum()), bool(greedy[row][sel].all())))
    return out
