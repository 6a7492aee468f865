"""Training-time evaluator: greedy latent-loop accuracy, teacher CoT accuracy, logit lens.

Plain torch (no nnsight), so training can evaluate cheaply; it follows the same conventions
as the package's inference loop (left padding, masks, position ids, K latents via
`inputs_embeds` and the KV cache, then eot and greedy decoding with eot excluded). The
package's nnsight-based inference is the reference for reported results; this module's
numbers are what training logs and what `TRAINING.md` quotes for the tiny model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from ..data.rows import clean_question
from ..data.scoring import extract_prediction
from ..models.kv_cache import cache_kwargs, output_cache
from ..tracing.batching import extend_mask, left_pad, next_positions, positions_from_mask
from .codi import final_norm, run_latents

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def parse_answer(text: str) -> str | None:
    """The predicted number (the one answer parser, `data.scoring.extract_prediction`): the first number
    after "answer is", else the last number in `text`; None if there is none.
    """
    value = extract_prediction(text, after="answer is")
    return None if math.isinf(value) else repr(value)


def _unembedding(model: PreTrainedModel) -> nn.Module:
    # a causal LM always has one; transformers types get_output_embeddings() as Optional
    return cast(nn.Module, model.get_output_embeddings())


def same_number(pred: str | None, gold: str) -> bool:
    """Whether a parsed prediction matches the gold answer: as numbers within 1e-6, else as stripped strings."""
    if pred is None:
        return False
    try:
        return abs(float(pred) - float(gold)) < 1e-6
    except ValueError:
        return pred.strip() == gold.strip()


def _greedy(model: PreTrainedModel, first_logits: Tensor, cache: object, mask: Tensor, max_new_tokens: int,
            eos_id: int | None, banned: Sequence[int]) -> list[list[int]]:
    """Greedy decoding continuing a cached run: `first_logits` `Float[Tensor, "batch vocab"]`."""
    batch = first_logits.shape[0]
    done = torch.zeros(batch, dtype=torch.bool)
    out: list[list[int]] = [[] for _ in range(batch)]
    logits = first_logits
    for step in range(max_new_tokens):
        logits = logits.float().clone()
        logits[:, list(banned)] = float("-inf")
        nxt = logits.argmax(-1)
        for row in range(batch):
            if not done[row]:
                out[row].append(int(nxt[row]))
        if eos_id is not None:
            done |= nxt.cpu() == eos_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        pos = next_positions(mask)
        mask = extend_mask(mask)
        res = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, **cache_kwargs(cache),
                    use_cache=True)
        cache, logits = output_cache(res), res.logits[:, -1]
    return out


@torch.no_grad()
def student_generate(model: PreTrainedModel, prj: nn.Module, tokenizer, questions: Sequence[str], *, num_latents: int,
                     bot_id: int, eot_id: int, pad_id: int, eos_id: int | None, remove_eos: bool = True,
                     prompt_suffix: str = "", max_new_tokens: int = 12, keep_hidden: bool = False,
                     ) -> tuple[list[str], list[tuple[Tensor, ...]]]:
    """Greedy CODI answers for `questions`: prompt, K latents, eot (+eos), then decoding.

    Returns `(texts, hidden)` where `hidden` is `run_latents`' per-step hidden states (if kept).
    """
    device = next(model.parameters()).device
    extra = [] if remove_eos else [eos_id]
    prompts = [tokenizer(clean_question(q, prompt_suffix))["input_ids"] + extra + [bot_id] for q in questions]
    ids, mask = left_pad(prompts, pad_id)
    run = run_latents(model, prj, ids.to(device), mask.to(device), num_latents, keep_hidden=keep_hidden)
    tail = torch.tensor([[eot_id] + extra] * len(questions), device=device)
    pos = next_positions(run.mask, tail.shape[1])
    mask = extend_mask(run.mask, tail.shape[1])
    res = model(input_ids=tail, attention_mask=mask, position_ids=pos, **cache_kwargs(run.cache), use_cache=True)
    gen = _greedy(model, res.logits[:, -1], output_cache(res), mask, max_new_tokens, eos_id, [eot_id])
    texts = [tokenizer.decode(g, skip_special_tokens=True) for g in gen]
    return texts, run.hidden


@torch.no_grad()
def teacher_generate(model: PreTrainedModel, tokenizer, questions: Sequence[str], *, pad_id: int, eos_id: int | None,
                     eot_id: int, bot_id: int, prompt_suffix: str = "", max_new_tokens: int = 48) -> list[str]:
    """Free-running explicit-CoT generation from the question alone (bot/eot banned)."""
    device = next(model.parameters()).device
    prompts = [tokenizer(clean_question(q, prompt_suffix))["input_ids"] for q in questions]
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    res = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask), use_cache=True)
    gen = _greedy(model, res.logits[:, -1], output_cache(res), mask, max_new_tokens, eos_id,
                  [eot_id, bot_id, pad_id])
    return [tokenizer.decode(g, skip_special_tokens=True) for g in gen]


@dataclass
class EvalResult:
    """Accuracy of one evaluation. `predictions` are the decoded texts."""

    accuracy: float
    n: int
    predictions: list[str] = field(default_factory=list)
    by_steps: dict[int, float] = field(default_factory=dict)


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _score(texts: list[str], answers: Sequence[str], steps: Sequence[int] | None) -> EvalResult:
    correct = [same_number(parse_answer(t), a) for t, a in zip(texts, answers)]
    by_steps: dict[int, float] = {}
    if steps is not None:
        for s in sorted(set(steps)):
            rows = [c for c, k in zip(correct, steps) if k == s]
            by_steps[int(s)] = sum(rows) / len(rows)
    return EvalResult(sum(correct) / max(1, len(correct)), len(correct), texts, by_steps)


def evaluate_student(model: PreTrainedModel, prj: nn.Module, tokenizer, questions, answers, *, num_latents: int,
                     ids: dict[str, int], remove_eos: bool = True, prompt_suffix: str = "", batch_size: int = 128,
                     steps: Sequence[int] | None = None) -> EvalResult:
    """Greedy latent-loop accuracy with `num_latents` latents. `ids`: pad_id, bot_id, eot_id, eos_id."""
    was_training = model.training
    model.eval(); prj.eval()
    texts: list[str] = []
    for sl in _batches(len(questions), batch_size):
        t, _ = student_generate(model, prj, tokenizer, questions[sl], num_latents=num_latents, remove_eos=remove_eos,
                                prompt_suffix=prompt_suffix, bot_id=ids["bot_id"], eot_id=ids["eot_id"],
                                pad_id=ids["pad_id"], eos_id=ids["eos_id"])
        texts += t
    model.train(was_training); prj.train(was_training)
    return _score(texts, answers, steps)


def evaluate_teacher(model: PreTrainedModel, tokenizer, questions, answers, *, ids: dict[str, int],
                     prompt_suffix: str = "", batch_size: int = 128, steps: Sequence[int] | None = None,
                     max_new_tokens: int = 48) -> EvalResult:
    """Explicit-CoT accuracy of the teacher (free-running greedy CoT, then the answer)."""
    was_training = model.training
    model.eval()
    texts: list[str] = []
    for sl in _batches(len(questions), batch_size):
        texts += teacher_generate(model, tokenizer, questions[sl], pad_id=ids["pad_id"], eos_id=ids["eos_id"],
                                  eot_id=ids["eot_id"], bot_id=ids["bot_id"], prompt_suffix=prompt_suffix,
                                  max_new_tokens=max_new_tokens)
    model.train(was_training)
    return _score(texts, answers, steps)


@torch.no_grad()
def lens_table(model: PreTrainedModel, prj: nn.Module, tokenizer, questions, intermediates: Sequence[Sequence[int]], *,
               num_latents: int, ids: dict[str, int], remove_eos: bool = True, prompt_suffix: str = "",
               batch_size: int = 128,
               top_k: int = 5) -> dict:
    """Logit lens (final norm + unembedding) on every layer at every latent step.

    For step s (0 = the bot position of the prompt call, k = latent k's call) and layer l
    (1..L; the last entry of `hidden_states` is already normed, so only the unembedding is
    applied to it), a read-out "hits" if its top-1 (top-k) token is one of the problem's
    intermediate values other than the final answer. Chance: the same read-outs scored against
    the intermediate values of another problem (the batch rolled by one). Problems with no
    non-final intermediate value different from the answer are skipped.

    Returns `{"top1": [[...]], "topk": ..., "chance_top1": ..., "chance_topk": ..., "n": int,
    "per_value_top1": ...}`, tables indexed `[step][layer-1]`; `per_value_top1[step][layer-1][j]`
    is the rate at which the top-1 equals intermediate j (j = 0..max_steps-2).
    """
    model.eval(); prj.eval()
    norm, head = final_norm(model), _unembedding(model)
    number_id = {}
    for v in {v for vals in intermediates for v in vals}:
        tid = tokenizer.convert_tokens_to_ids(str(v))
        if tid is not None and tid != tokenizer.unk_token_id:
            number_id[v] = tid
    targets = []
    for vals in intermediates:
        answer = vals[-1]
        targets.append([number_id.get(v, -1) if v != answer else -1 for v in vals[:-1]])
    keep = [i for i, t in enumerate(targets) if any(x >= 0 for x in t)]
    questions = [questions[i] for i in keep]
    targets = [targets[i] for i in keep]
    n_steps = num_latents + 1
    n_layers = None
    width = max(len(t) for t in targets) if targets else 0
    acc = {}
    for sl in _batches(len(questions), batch_size):
        _, hidden = student_generate(model, prj, tokenizer, questions[sl], num_latents=num_latents,
                                     remove_eos=remove_eos, prompt_suffix=prompt_suffix, max_new_tokens=1,
                                     keep_hidden=True, **ids)
        tgt = torch.full((len(hidden[0][0]), width), -1, dtype=torch.long)
        for r, t in enumerate(targets[sl]):
            tgt[r, : len(t)] = torch.tensor(t)
        other = tgt.roll(1, dims=0)
        n_layers = len(hidden[0]) - 1
        for s in range(n_steps):
            for l in range(1, n_layers + 1):
                h = hidden[s][l]
                h = h if l == n_layers else norm(h)
                top = head(h).float().topk(top_k, dim=-1).indices.cpu()  # batch k
                for name, t in (("", tgt), ("chance_", other)):
                    valid = t >= 0
                    hit1 = ((top[:, :1, None] == t[:, None, :]) & valid[:, None, :])  # batch 1 width
                    hitk = ((top[:, :, None] == t[:, None, :]) & valid[:, None, :])
                    acc.setdefault((name + "top1", s, l), 0)
                    acc[(name + "top1", s, l)] += int(hit1.any(-1).any(-1).sum())
                    acc.setdefault((name + "topk", s, l), 0)
                    acc[(name + "topk", s, l)] += int(hitk.any(-1).any(-1).sum())
                    if not name:
                        for j in range(width):
                            acc.setdefault(("value", s, l, j), 0)
                            acc[("value", s, l, j)] += int(hit1[:, 0, j].sum())
    n = len(questions)
    result: dict = {"n": n, "top_k": top_k, "steps": n_steps, "layers": n_layers}
    if n == 0:
        return result
    assert n_layers is not None  # set by the first batch, and n > 0
    for key in ("top1", "topk", "chance_top1", "chance_topk"):
        result[key] = [[acc[(key, s, l)] / n for l in range(1, n_layers + 1)] for s in range(n_steps)]
    result["per_value_top1"] = [[[acc[("value", s, l, j)] / n for j in range(width)]
                                 for l in range(1, n_layers + 1)] for s in range(n_steps)]
    return result


def lens_top_tokens(model: PreTrainedModel, prj: nn.Module, tokenizer, questions, *, num_latents: int,
                    ids: dict[str, int], remove_eos: bool = True, prompt_suffix: str = "") -> list[list[str]]:
    """The last layer's top-1 lens token at each step (0..K) for each question (for examples)."""
    model.eval(); prj.eval()
    head = _unembedding(model)
    with torch.no_grad():
        _, hidden = student_generate(model, prj, tokenizer, questions, num_latents=num_latents, remove_eos=remove_eos,
                                     prompt_suffix=prompt_suffix, max_new_tokens=1, keep_hidden=True, **ids)
        rows: list[list[str]] = [[] for _ in questions]
        for step in hidden:
            top = head(step[-1]).argmax(-1).tolist()
            for r, t in enumerate(top):
                rows[r].append(tokenizer.convert_ids_to_tokens(t))
    return rows
