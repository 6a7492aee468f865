"""Accuracy and reasoning rate of an instruct LM under one condition (direct, cot, single, continuous).

Every question is asked through the chat template (the direct prompt for `direct` and the two
steered schedules, the CoT prompt for `cot`), a continuation is generated (greedy by default)
with the condition's `Steering` hook, the answer is scored as everywhere in this project (the
last number against the gold number) and the output is marked as reasoning when it writes a
chain (`writes_chain`).

Example:
    >>> res = evaluate_condition(model, load_questions("synthetic", "test", 50),
    ...                          parse_condition("continuous:2:4"), vectors)       # doctest: +SKIP
    >>> res.accuracy, res.reasoning_rate                                           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.scoring import extract_gold, extract_prediction, is_correct
from ..stats import bootstrap_ci
from ..tracing.batching import batches_by_length
from ..tracing.plain_lm import PlainLM
from .cot_steering import Condition, check_vector, steering_for
from .generation import generate_forked, generate_ids
from .prompts import Instructions, chain_equations, prompt_ids, require_chat_template, writes_chain

if TYPE_CHECKING:
    from nnsight import TransformersModel


@dataclass
class ConditionResult:
    """Per-example outcomes of one condition."""

    condition: Condition
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    reasoning: list[bool] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if self.n else float("nan")

    @property
    def reasoning_rate(self) -> float:
        return float(np.mean(self.reasoning)) if self.n else float("nan")

    def summary(self, seed: int = 0) -> dict[str, Any]:
        """`{name, layer, coef, accuracy, ci_low, ci_high, reasoning_rate, n, mean_length}`."""
        ci = bootstrap_ci(np.asarray(self.correct, dtype=float), seed=seed)
        c = self.condition
        return {"name": c.name, "layer": c.layer, "coef": c.coef, "accuracy": self.accuracy,
                "ci_low": ci.low, "ci_high": ci.high, "reasoning_rate": self.reasoning_rate, "n": self.n,
                "mean_length": float(np.mean(self.lengths)) if self.n else float("nan")}


def check_condition(model: TransformersModel, condition: Condition, vectors) -> None:
    """Fail before any work when the condition cannot run on this model."""
    require_chat_template(model.tokenizer)
    if condition.schedule is not None:
        if vectors is None:
            raise ValueError(f"condition {condition.label()} needs a vector store")
        if condition.layer is None:
            raise ValueError(f"condition {condition.label()} needs a layer")
        lm = PlainLM.of(model)
        check_vector(torch.as_tensor(vectors), condition.layer, lm.hidden_size, lm.num_layers)


def evaluate_condition(model: TransformersModel, dataset, condition: Condition, vectors=None,
                       instructions: Instructions = Instructions(), max_new_tokens: int = 64,
                       batch_size: int = 16, greedy: bool = True, seed: int = 0, remote: Any = None,
                       progress: bool = True, prompt_mode: str | None = None) -> ConditionResult:
    """Generate under `condition` for every example of `dataset` (`id`, `question`, `answer`) and score.

    `prompt_mode` ("cot" | "direct" | "none") overrides the condition's prompt, e.g. to steer the
    prompt without any instruction.
    """
    return evaluate_conditions(model, dataset, [condition], vectors, instructions, max_new_tokens, batch_size,
                               greedy, seed, remote, progress, prompt_mode, fork=False)[0]


def evaluate_conditions(model: TransformersModel, dataset, conditions: Sequence[Condition], vectors=None,
                        instructions: Instructions = Instructions(), max_new_tokens: int = 64,
                        batch_size: int = 16, greedy: bool = True, seed: int = 0, remote: Any = None,
                        progress: bool = True, prompt_mode: str | None = None, fork: bool = True
                        ) -> list[ConditionResult]:
    """`evaluate_condition` for several conditions; results identical to evaluating each alone.

    With `fork` (greedy, local runs only), conditions whose hooks edit the prompt forward alike
    (`Steering.prompt_edit`: `single` and `continuous` at one layer and coef, same prompt) compute the
    prompt forward and first token once per batch and branch from there (`generate_forked`); the
    answers are bit-identical to whole runs. Sampled or remote runs evaluate every condition whole.
    """
    conditions = list(conditions)
    for condition in conditions:
        check_condition(model, condition, vectors)
    tok = model.tokenizer
    questions = list(dataset["question"])
    golds = [extract_gold(a) for a in dataset["answer"]]
    hooks = [[h] if (h := steering_for(c, vectors)) is not None else [] for c in conditions]
    groups: dict[Any, list[int]] = {}  # conditions that may share their prompt forward
    for i, (c, hs) in enumerate(zip(conditions, hooks)):
        mode = prompt_mode or c.prompt_mode
        edit = hs[0].prompt_edit() if hs else None
        key = (mode, edit) if fork and greedy and not remote and edit is not None else ("alone", i)
        groups.setdefault(key, []).append(i)
    gens: list[list[list[int]]] = [[[] for _ in questions] for _ in conditions]
    for members in groups.values():
        mode = prompt_mode or conditions[members[0]].prompt_mode
        prompts = [prompt_ids(tok, q, mode, instructions) for q in questions]
        label = "+".join(conditions[i].label() for i in members)
        bar = tqdm(total=len(questions), desc=label, unit="q", disable=not progress)
        for b, idx in enumerate(batches_by_length([len(p) for p in prompts], batch_size)):
            batch = [prompts[i] for i in idx]
            if len(members) > 1:
                outs = [g for g, _ in generate_forked(model, batch, [hooks[m] for m in members], max_new_tokens)]
            else:
                outs = [generate_ids(model, batch, hooks[members[0]], max_new_tokens=max_new_tokens, greedy=greedy,
                                     seed=seed * 1_000_003 + b, remote=remote)[0]]
            for m, out in zip(members, outs):
                for i, g in zip(idx, out):
                    gens[m][i] = g
            bar.update(len(idx))
        bar.close()
    return [_score(tok, c, dataset["id"], g, golds) for c, g in zip(conditions, gens)]


def _score(tok, condition: Condition, ids, gens: Sequence[Sequence[int]], golds) -> ConditionResult:
    result = ConditionResult(condition)
    for ex_id, gen, gold in zip(ids, gens, golds):
        text = tok.decode(gen, skip_special_tokens=True)
        result.ids.append(str(ex_id))
        result.texts.append(text)
        result.correct.append(is_correct(extract_prediction(text), gold))
        result.reasoning.append(writes_chain(text))
        result.lengths.append(len(gen))
    return result


def reasoning_rate(texts: Sequence[str]) -> float:
    """Share of outputs that write a chain."""
    return float(np.mean([writes_chain(t) for t in texts])) if texts else float("nan")


def chain_agreement(texts: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """How a condition's chains compare with reference outputs of the same questions (the CoT prompt's).

    Over the outputs that write at least one step: `first_step_match` (its first equation is the
    reference's first), `prefix_match` (every step it writes equals the reference's step at that
    place), `stops_early` (fewer steps than the reference); `steps` / `reference_steps`: mean
    number of steps written (over chain-writing outputs / over all references); `n_chains`.

        >>> chain_agreement(["<< 2 + 3 = 5 >> The answer is : 5"],
        ...                 ["<< 2 + 3 = 5 >> << 5 * 2 = 10 >> The answer is : 10"])["stops_early"]
        1.0
    """
    if len(texts) != len(reference):
        raise ValueError(f"{len(texts)} outputs but {len(reference)} reference outputs")
    pairs = [(chain_equations(t), chain_equations(r)) for t, r in zip(texts, reference)]
    written = [(s, r) for s, r in pairs if s]
    mean = (lambda xs: float(np.mean(xs)) if len(xs) else float("nan"))
    return {"n_chains": len(written),
            "first_step_match": mean([bool(r) and s[0] == r[0] for s, r in written]),
            "prefix_match": mean([s == r[:len(s)] for s, r in written]),
            "stops_early": mean([len(s) < len(r) for s, r in written]),
            "steps": mean([len(s) for s, _ in written]),
            "reference_steps": mean([len(r) for _, r in pairs])}
