"""The lm-eval model `nnsight-codi`: any model this project loads, evaluated by lm-eval's harness.

- a **plain HF LM** (instruct): `generate_until` through `cot.generation.generate_ids` with an
  optional steering condition (`condition=single:L:C | continuous:L:C`, `vectors=STORE`) and an
  optional prompt mode that wraps each context in the chat template with the CoT / direct
  instruction (`prompt_mode=cot|direct`; default `raw`: the context as lm-eval built it, e.g.
  with `--apply_chat_template`); `loglikelihood` and `loglikelihood_rolling` from one traced
  forward (steered at every position for `continuous`, at the context only for `single`).
- a **CODI model**: `generate_until` through its latent loop (`evaluation.generate_answers`, i.e.
  `hooks.run_loop`), so accuracies equal `nnsight-codi eval`'s; `loglikelihood` is refused with
  an explanation (a CODI answer is conditioned on latents the context alone does not give).

Both run locally or through NDIF (`remote=local|ndif|URL`; for CODI either `ndif_model=REPO`, a
deployed merged checkpoint, or `lora_mode=interventions`, the hosted base model + the LoRA adapter
as interventions; `base=BASE` as `--base`).

Example::

    lm_eval --model nnsight-codi --model_args model=tiny --tasks nnsight_codi_synthetic   # after import
    nnsight-codi lm-eval --model-args model=tiny-instruct,prompt_mode=direct,condition=continuous:2:4,vectors=V \\
        --tasks nnsight_codi_synthetic --limit 50
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

CODI_LOGLIKELIHOOD = ("loglikelihood is not defined for a CODI model here: its answer is conditioned on latent "
                      "thoughts generated after the question, which a (context, continuation) score skips. "
                      "Use generate_until tasks (gsm8k, nnsight_codi_gsm8k_local, nnsight_codi_synthetic)")


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def _cut(text: str, until: list[str]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


@register_model("nnsight-codi")
class NnsightCodiLM(LM):
    """lm-eval model over `nnsight_codi.models.load_model` (CODI or plain HF LM)."""

    def __init__(self, model: str = "tiny", device: str = "cpu", dtype: str = "float32", batch_size: int | str = 16,
                 remote: str | None = None, ndif_model: str | None = None, vectors: str | None = None,
                 condition: str = "direct", prompt_mode: str = "raw", num_latents: int | None = None,
                 masking: str = "exact", max_gen_toks: int = 256, seed: int = 0, progress: Any = True,
                 base: str | None = None, lora_mode: str = "merged", loaded: Any = None,
                 max_batch_size: Any = None, **unknown: Any) -> None:
        if unknown:  # a misspelt model arg would otherwise run the wrong experiment silently
            import inspect

            valid = sorted(p for p in inspect.signature(type(self).__init__).parameters
                           if p not in ("self", "unknown", "loaded", "max_batch_size"))
            raise ValueError(f"unknown nnsight-codi model arg(s) {sorted(unknown)}; valid: {valid}")
        super().__init__()
        from ..commands.common import remote_value
        from ..cot.remote import check_remote, load_instruct_model
        from ..cot.steering import parse_condition
        from ..tracing.codi_model import CodiModel

        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self.remote = check_remote(remote_value(remote) if remote not in (None, "", "None") else None)
        self.condition = parse_condition(condition)
        if prompt_mode not in ("raw", "cot", "direct"):
            raise ValueError(f"prompt_mode must be raw, cot or direct, got {prompt_mode!r}")
        self.prompt_mode, self.max_gen_toks, self.seed = prompt_mode, int(max_gen_toks), int(seed)
        self.num_latents = None if num_latents in (None, "", "None") else int(num_latents)
        self.masking, self.progress = masking, _bool(progress)
        if loaded is not None:
            self.model = loaded
        elif self.remote and self.remote != "local" and ndif_model is None and lora_mode == "merged":
            self.model = load_instruct_model(model, device, dtype, self.remote)
        else:
            from ..models import load_model

            self.model = load_model(model, device=device, dtype=dtype, base=base or None, lora_mode=lora_mode)
        self.is_codi = isinstance(self.model, CodiModel)
        if ndif_model:
            object.__setattr__(self.model, "ndif_repo_id", ndif_model)
        if self.remote and hasattr(type(self.model), "session_model"):  # base + LoRA interventions:
            self.model.session_model(self.remote)  # check the (hosted) base's weights before any work
        self.vectors = None
        if self.is_codi:
            if self.condition.name != "direct" or prompt_mode != "raw":
                raise ValueError("steering conditions and prompt modes are for plain instruct LMs, not CODI models")
        else:
            from ..cot.evaluate import check_condition
            from ..cot.vectors import load_vectors

            if vectors:
                self.vectors = load_vectors(vectors)
            if prompt_mode != "raw" or self.condition.schedule is not None:
                check_condition(self.model, self.condition, self.vectors)
            if self.condition.name == "cot":
                raise ValueError("condition=cot is prompt_mode=cot; conditions here are direct, single:L:C, continuous:L:C")
        self._device = str(device)

    # -- helpers -------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "nnsight-codi")).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _hooks(self, context_mask=None) -> list:
        from ..cot.steering import Steering

        c = self.condition
        if c.schedule is None:
            return []
        mask = context_mask if c.schedule == "single" else None  # single: the prompt (context) only
        return [Steering(torch.as_tensor(self.vectors)[c.layer], c.layer, c.coef, c.schedule, positions=mask)]

    def _prompt_ids(self, context: str) -> list[int]:
        from ..cot.prompts import prompt_ids

        if self.prompt_mode == "raw":
            return self.tokenizer(context, add_special_tokens=False)["input_ids"]
        return prompt_ids(self.tokenizer, context, self.prompt_mode)

    # -- lm-eval API -----------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[repr(sorted(req.args[1].items()))].append(i)
        out: list[str] = [""] * len(requests)
        bar = tqdm(total=len(requests), desc="nnsight-codi generate", disable=disable_tqdm or not self.progress)
        for idx in groups.values():
            kwargs = dict(requests[idx[0]].args[1])
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            contexts = [requests[i].args[0] for i in idx]
            texts = self._generate(contexts, max_new, greedy=not _bool(kwargs.get("do_sample", False)))
            for i, text in zip(idx, texts):
                out[i] = _cut(text, until)
                self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
            bar.update(len(idx))
        bar.close()
        return out

    def _generate(self, contexts: list[str], max_new: int, greedy: bool) -> list[str]:
        if self.is_codi:
            from ..evaluation import generate_answers

            return generate_answers(self.model, contexts, batch_size=self.batch_size, num_latents=self.num_latents,
                                    max_new_tokens=max_new, masking=self.masking, remote=self.remote, progress=False)
        from ..cot.generation import generate_ids
        from ..evaluation import batches_by_length

        prompts = [self._prompt_ids(c) for c in contexts]
        texts = [""] * len(contexts)
        for b, idx in enumerate(batches_by_length([len(p) for p in prompts], self.batch_size)):
            gens, _ = generate_ids(self.model, [prompts[i] for i in idx], self._hooks(), max_new_tokens=max_new,
                                   greedy=greedy, seed=self.seed * 1_000_003 + b, remote=self.remote)
            for i, g in zip(idx, gens):
                texts[i] = self.tokenizer.decode(g, skip_special_tokens=True)
        return texts

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        if self.is_codi:
            raise NotImplementedError(CODI_LOGLIKELIHOOD)
        pairs = []
        for req in requests:
            context, continuation = req.args
            ctx = self._prompt_ids(context) if context else [self._prefix_id()]
            pairs.append((ctx, self.tokenizer(continuation, add_special_tokens=False)["input_ids"]))
        return self._score(pairs, disable_tqdm)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        if self.is_codi:
            raise NotImplementedError(CODI_LOGLIKELIHOOD)
        limit = int(getattr(self.model._module.config, "max_position_embeddings", 0) or
                    getattr(self.model._module.config, "n_positions", 1 << 30))
        pairs = []
        for req in requests:
            ids = self.tokenizer(req.args[0], add_special_tokens=False)["input_ids"]
            if len(ids) + 1 > limit:
                raise ValueError(f"loglikelihood_rolling: a document of {len(ids)} tokens exceeds the model's "
                                 f"context ({limit}); windowing is not implemented")
            pairs.append(([self._prefix_id()], ids))
        return [lp for lp, _ in self._score(pairs, disable_tqdm)]

    def _prefix_id(self) -> int:
        tok = self.tokenizer
        pid = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if pid is None:
            raise ValueError("the tokenizer has no bos/eos token to condition an empty context on")
        return int(pid)

    def _score(self, pairs: list[tuple[list[int], list[int]]], disable_tqdm: bool) -> list[tuple[float, bool]]:
        from ..evaluation import batches_by_length

        out: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)
        lengths = [len(c) + len(x) for c, x in pairs]
        bar = tqdm(total=len(pairs), desc="nnsight-codi loglikelihood", disable=disable_tqdm or not self.progress)
        for idx in batches_by_length(lengths, self.batch_size):
            for i, res in zip(idx, continuation_logprobs(self.model, [pairs[i] for i in idx], self._hooks,
                                                         self.remote)):
                out[i] = res
            bar.update(len(idx))
        bar.close()
        return out


def continuation_logprobs(model, pairs, hooks_for, remote=None) -> list[tuple[float, bool]]:
    """`(sum log p(continuation | context), greedy?)` per `(context ids, continuation ids)` pair, in one
    left-padded traced forward; `hooks_for(context_mask)` gives the step hooks (steering)."""
    import nnsight

    from ..cot.generation import _device, num_layers, pad_id
    from ..cot.remote import ndif_errors, remote_kwargs
    from ..tracing.batching import left_pad, positions_from_mask
    from ..tracing.hooks import visit_step

    seqs = [list(c) + list(x) for c, x in pairs]
    ids, mask = left_pad(seqs, pad_id(model.tokenizer))
    width = ids.shape[1]
    context_mask = torch.zeros_like(mask, dtype=torch.bool)
    target = torch.zeros_like(mask, dtype=torch.bool)  # positions whose next token is a continuation token
    for row, (c, x) in enumerate(pairs):
        start = width - len(x) - len(c)
        context_mask[row, start: start + len(c)] = True
        target[row, width - len(x) - 1: width - 1] = True
    hooks = hooks_for(context_mask)
    device = _device(model)
    nxt = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)
    with ndif_errors(remote, ""):
        with model.trace(input_ids=ids.to(device), attention_mask=mask.to(device),
                         position_ids=positions_from_mask(mask).to(device), **remote_kwargs(remote)):
            sink = nnsight.save([])
            visit_step(model, 0, hooks, sink, num_layers(model))
            logits = model.output.logits
            lp = logits.float().log_softmax(-1).gather(-1, nxt.to(logits.device)[..., None])[..., 0]
            hit = logits.argmax(-1) == nxt.to(logits.device)
            scores = nnsight.save(lp.detach().cpu())
            greedy = nnsight.save(hit.cpu())
    out = []
    for row in range(len(pairs)):
        sel = target[row]
        out.append((float(scores[row][sel].sum()), bool(greedy[row][sel].all())))
    return out
