"""Accuracy of a CODI model on a question-answer dataset, scored as the reference does.

Example:
    >>> codi = load_model("tiny")                                          # doctest: +SKIP
    >>> result = evaluate(codi, load_eval_dataset("synthetic", limit=50))   # doctest: +SKIP
    >>> result.accuracy                                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .data.scoring import extract_gold, extract_prediction, is_correct
from .predictions import Prediction, write_predictions
from .steps import resolve_num_latents
from .tracing.batching import batches_by_length
from .tracing.branches import Branch, run_branches
from .tracing.loop import Masking, run_loop

if TYPE_CHECKING:
    from .tracing.codi_model import CodiModel


@dataclass
class EvalResult:
    """The predictions of one model on one dataset at `num_latents` latents, with accuracy and summary."""

    model: str
    dataset: str
    num_latents: int
    predictions: list[Prediction] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.predictions)

    @property
    def accuracy(self) -> float:
        return sum(p.correct for p in self.predictions) / self.n if self.n else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "n": self.n, "correct": sum(p.correct for p in self.predictions),
                "num_latents": self.num_latents, "model": self.model, "dataset": self.dataset}

    def write(self, directory: str | Path) -> Path:
        """Write `predictions.jsonl` (`predictions.write_predictions`) and `summary.json` into `directory`."""
        directory = Path(directory)
        write_predictions(directory, self.predictions)
        (directory / "summary.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        return directory


def direct_answer_budget(codi: CodiModel, slack: int = 2) -> int:
    """Answer tokens that fit a direct answer and nothing more: the model's answer template
    (codi.json `answer_template`, else the reference's "The answer is: {answer}") with a
    one-token number, plus eos, plus `slack` tokens for longer numbers.

    Decoding bounded to this leaves no room for an explicit chain of thought, which is what
    "accuracy without latents" should measure: a CODI model given no latents may instead fall
    back to writing its chain of thought out (seed 0 of the shipped tiny model's recipe does).
    """
    template = codi.codi_config.extra.get("answer_template", "The answer is: {answer}")
    return len(codi.tokenizer(template.format(answer=0), add_special_tokens=False)["input_ids"]) + 1 + slack




def batches_in_order(n: int, batch_size: int) -> list[list[int]]:
    """Consecutive rows, `batch_size` at a time, the last batch holding the rest: how the reference's
    test.py batches (with reference masking a batch's composition changes its answers).

    >>> batches_in_order(5, 2)
    [[0, 1], [2, 3], [4]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


def eval_batches(lengths: Sequence[int], batch_size: int, masking: Masking = "exact") -> list[list[int]]:
    """The batches `generate_answers` runs: by prompt length under exact masking (answers do not depend
    on the batch), consecutive dataset rows under reference masking (as the reference does).
    """
    if masking == "reference":
        return batches_in_order(len(lengths), batch_size)
    return batches_by_length(lengths, batch_size)


@torch.inference_mode()
def generate_answers(codi: CodiModel, questions: Sequence[str], batch_size: int = 32, num_latents: int | None = None,
                     max_new_tokens: int = 256, masking: Masking = "exact", remote: bool | str | None = None,
                     progress: bool = True, feedback: str | None = None) -> list[str]:
    """Answer texts for every question, in input order (batches: `eval_batches`); `feedback`: a latent-input
    condition of any family ("pause", …; `CodiModel.condition_feedback`).
    """
    k = resolve_num_latents(num_latents, codi.num_latents)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    lengths = [len(codi.prompt_ids(q)) for q in questions]
    texts: list[str] = [""] * len(questions)
    bar = tqdm(total=len(questions), desc="latent loop", unit="q", disable=not progress)
    for idx in eval_batches(lengths, batch_size, masking):
        prompts = codi.encode([questions[i] for i in idx])
        tokens, _ = run_loop(codi, prompts, num_latents=k, max_new_tokens=max_new_tokens,
                             masking=masking, remote=remote, feedback=feedback)
        for i, text in zip(idx, codi.decode(tokens)):
            texts[i] = text
        bar.update(len(idx))
    bar.close()
    return texts


@torch.inference_mode()
def answers_by_latent_count(codi: CodiModel, questions: Sequence[str], latent_counts: Sequence[int] | None = None,
                            batch_size: int = 32, max_new_tokens: int = 256, masking: Masking = "exact",
                            remote: bool | str | None = None, progress: bool = True,
                            fork: bool = True) -> dict[int, list[str]]:
    """Early answering: answer texts with each number of latents in `latent_counts` (default 0..K), in input
    order. One loop with the largest count is the trunk; the run with k latents forks from it after
    latent k (eot next), so the K+1 read-outs cost one loop plus their answer steps (`fork=False`:
    each run made whole; the same texts).
    """
    counts = list(range(codi.num_latents + 1)) if latent_counts is None else [int(k) for k in latent_counts]
    if not counts or any(k < 0 for k in counts) or len(set(counts)) != len(counts):
        raise ValueError(f"latent_counts must be distinct integers >= 0, got {latent_counts}")
    lengths = [len(codi.prompt_ids(q)) for q in questions]
    texts = {k: [""] * len(questions) for k in counts}
    bar = tqdm(total=len(questions) * len(counts), desc="latent counts", unit="run", disable=not progress)
    for idx in batches_by_length(lengths, batch_size):
        prompts = codi.encode([questions[i] for i in idx])
        runs = run_branches(codi, prompts, [Branch([], k) for k in counts], num_latents=max(counts),
                            max_new_tokens=max_new_tokens, masking=masking, remote=remote, fork=fork)
        for k, (tokens, _) in zip(counts, runs):
            for i, text in zip(idx, codi.decode(tokens)):
                texts[k][i] = text
        bar.update(len(idx) * len(counts))
    bar.close()
    return texts


def evaluate_latent_counts(codi: CodiModel, dataset, latent_counts: Sequence[int] | None = None, batch_size: int = 32,
                           max_new_tokens: int = 256, masking: Masking = "exact", remote: bool | str | None = None,
                           progress: bool = True, fork: bool = True) -> dict[int, EvalResult]:
    """Accuracy vs the number of latents (`answers_by_latent_count`, scored): `{k: EvalResult}`."""
    questions = list(dataset["question"])
    golds = [extract_gold(a) for a in dataset["answer"]]
    by_k = answers_by_latent_count(codi, questions, latent_counts, batch_size, max_new_tokens, masking, remote,
                                   progress, fork)
    out = {}
    for k, texts in by_k.items():
        result = EvalResult(model="", dataset="", num_latents=k)
        for ex_id, q, text, gold in zip(dataset["id"], questions, texts, golds):
            pred = extract_prediction(text)
            result.predictions.append(Prediction(str(ex_id), q, text, pred, gold, is_correct(pred, gold)))
        out[k] = result
    return out


def evaluate(codi: CodiModel, dataset, batch_size: int = 32, num_latents: int | None = None, max_new_tokens: int = 256,
             masking: Masking = "exact", remote: bool | str | None = None, progress: bool = True,
             model_name: str = "", dataset_name: str = "", feedback: str | None = None) -> EvalResult:
    """Run the latent loop on every example of `dataset` (fields `id`, `question`, `answer`) and score it
    (under the latent-input condition `feedback`, e.g. "pause", if given).
    """
    questions = list(dataset["question"])
    golds = [extract_gold(a) for a in dataset["answer"]]
    k = resolve_num_latents(num_latents, codi.num_latents)
    texts = generate_answers(codi, questions, batch_size, k, max_new_tokens, masking, remote, progress, feedback)
    result = EvalResult(model=model_name, dataset=dataset_name, num_latents=k)
    for ex_id, q, text, gold in zip(dataset["id"], questions, texts, golds):
        pred = extract_prediction(text)
        result.predictions.append(Prediction(str(ex_id), q, text, pred, gold, is_correct(pred, gold)))
    return result
