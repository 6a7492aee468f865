"""Prompting, generation and scoring for instruct LMs asked to reason step by step or answer directly.

The shipped `tiny-instruct` model (`load_model("tiny-instruct")`) follows the two instructions
of the chain-of-thought steering paper (the canonical ones, below) and 62 trained paraphrases of
them (`training.paraphrases`; 12 more are held out), appended to the question after a space:

    "cot":    "Answer the question thinking step by step."  → `<< a op b = c >> … The answer is : N`
    "direct": "Answer the question immediately, without any elaboration."  → `The answer is : N`
    "none":   the question alone (trained to answer directly; see the model's TRAINING.md)

`instruct_prompt` builds the chat-templated prompt for one question (the tokenizer's own
`apply_chat_template`, with the generation prompt), `contains_chain` is THE rule for "the output
contains a chain of thought" (used by the model's report and by the steering study alike),
`generate_chat` decodes greedily in left-padded batches with `transformers`' `generate`, and
`evaluate_instruct` scores answers as `data.scoring` does.

Example:
    >>> contains_chain("<< 3 + 4 = 7 >> << 7 * 2 = 14 >> The answer is : 14")
    True
    >>> contains_chain("The answer is : 14")
    False
    >>> user_message("Tom has 3 pens . How many pens does Tom have ?", "direct")
    'Tom has 3 pens . How many pens does Tom have ? Answer the question immediately, without any elaboration.'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from .data.chains import count_annotations, has_annotation
from .data.scoring import extract_gold, extract_prediction, is_correct
from .tracing.batching import batches_by_length

if TYPE_CHECKING:
    from nnsight import TransformersModel
    from transformers import PreTrainedModel
    from transformers.generation.utils import GenerationMixin

COT_INSTRUCTION = "Answer the question thinking step by step."
DIRECT_INSTRUCTION = "Answer the question immediately, without any elaboration."
INSTRUCTIONS: dict[str, str] = {"cot": COT_INSTRUCTION, "direct": DIRECT_INSTRUCTION, "none": ""}
MODES = ("cot", "direct", "none")
INSTRUCT_FILE = "instruct.json"

def contains_chain(text: str) -> bool:
    """Whether a generated answer contains a chain of thought: at least one complete
    `<< … = … >>` equation (e.g. `<< 36 + 3 = 39 >>`). A bare "The answer is : N" has none.
    """
    return has_annotation(text)


def chain_steps(text: str) -> int:
    """The number of complete `<< … = … >>` equations in `text`."""
    return count_annotations(text)


def with_instruction(question: str, instruction: str) -> str:
    """The user turn: the question (whitespace-normalised), a space, and `instruction` ("" = none).

    >>> with_instruction(" Tom has 3 pens  . ", "Show your work ."), with_instruction("Q ?", "")
    ('Tom has 3 pens . Show your work .', 'Q ?')
    """
    text = question.strip().replace("  ", " ")
    return f"{text} {instruction}" if instruction else text


def user_message(question: str, mode: str = "cot", instructions: Mapping[str, str] | None = None) -> str:
    """The user turn of `mode` ("cot", "direct", "none"; `instructions` overrides the texts)."""
    table = {**INSTRUCTIONS, **(instructions or {})}
    if mode not in table:
        raise ValueError(f"unknown mode {mode!r}; choose one of {sorted(table)}")
    return with_instruction(question, table[mode])


def chat_prompt(tokenizer, user: str) -> str:
    """One user turn through the tokenizer's chat template, ending with the assistant generation prompt.

    Tokenize it with `tokenizer(prompt, add_special_tokens=False)` (the template already holds
    every special token).
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat template (not an instruct model)")
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


def instruct_prompt(tokenizer, question: str, mode: str = "cot", instructions: Mapping[str, str] | None = None) -> str:
    """The chat-templated prompt for `question` in `mode` ("cot", "direct" or "none"; `instructions`
    overrides the texts); any other instruction text: `chat_prompt(tokenizer, with_instruction(q, text))`.
    """
    return chat_prompt(tokenizer, user_message(question, mode, instructions))


def load_instructions(directory: str | Path) -> dict[str, str]:
    """The canonical instruction per mode recorded beside a trained model (`instruct.json`)."""
    path = Path(directory) / INSTRUCT_FILE
    if not path.is_file():
        return dict(INSTRUCTIONS)
    meta = json.loads(path.read_text())
    return {"none": "", **{mode: texts[0] for mode, texts in meta["instructions"].items()}}


def _hf_module(model: PreTrainedModel | TransformersModel) -> PreTrainedModel:
    """The underlying `transformers` model of an nnsight `TransformersModel` (or the model itself)."""
    return cast("PreTrainedModel", getattr(model, "_module", model))


@torch.inference_mode()
def generate_chat(model: PreTrainedModel | TransformersModel, tokenizer, prompts: Sequence[str],
                  max_new_tokens: int = 48, batch_size: int = 128) -> list[str]:
    """Greedy completions of chat-templated `prompts`, left-padded batches of similar length.

    `model`: a `transformers` causal LM or an nnsight `TransformersModel`. Returns the decoded
    new tokens (special tokens skipped), in input order.
    """
    lm = _hf_module(model)
    device = next(lm.parameters()).device
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts = [""] * len(prompts)
    for idx in batches_by_length([len(e) for e in encoded], batch_size):
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]):] = 1
        # a causal LM is PreTrainedModel + GenerationMixin; transformers' @deprecate_kwarg hides generate from pyright
        out = cast("GenerationMixin", lm).generate(  # pyright: ignore[reportAttributeAccessIssue]
            input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
            max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for row, i in enumerate(idx):
            texts[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
    return texts


@dataclass
class InstructEval:
    """Scores of one mode on a problem set: accuracy, rate of outputs with a chain, by number of steps."""

    mode: str
    n: int
    accuracy: float
    chain_rate: float
    accuracy_by_steps: dict[int, float] = field(default_factory=dict)
    chain_rate_by_steps: dict[int, float] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    chains: list[bool] = field(default_factory=list)

    def summary(self) -> dict:
        return {"mode": self.mode, "n": self.n, "accuracy": self.accuracy, "chain_rate": self.chain_rate,
                "accuracy_by_steps": self.accuracy_by_steps, "chain_rate_by_steps": self.chain_rate_by_steps}


def score_outputs(texts: Sequence[str], answers: Sequence, mode: str = "",
                  steps: Sequence[int] | None = None) -> InstructEval:
    """Score generated texts against gold answers (`data.scoring`: last number, exact) and detect chains."""
    correct = [is_correct(extract_prediction(t), extract_gold(a)) for t, a in zip(texts, answers, strict=True)]
    chains = [contains_chain(t) for t in texts]
    n = len(texts)
    by_acc: dict[int, float] = {}
    by_chain: dict[int, float] = {}
    if steps is not None:
        for s in sorted(set(steps)):
            rows = [i for i, k in enumerate(steps) if k == s]
            by_acc[int(s)] = sum(correct[i] for i in rows) / len(rows)
            by_chain[int(s)] = sum(chains[i] for i in rows) / len(rows)
    return InstructEval(mode, n, sum(correct) / max(1, n), sum(chains) / max(1, n), by_acc, by_chain,
                        list(texts), correct, chains)


def evaluate_instruct(model: PreTrainedModel | TransformersModel, tokenizer, data, mode: str = "cot",
                      instructions: Mapping[str, str] | None = None, max_new_tokens: int = 48,
                      batch_size: int = 128) -> InstructEval:
    """Generate for every problem of `data` (columns `question`, `answer`, optional `steps`) in `mode` and score."""
    questions = list(data["question"])
    prompts = [instruct_prompt(tokenizer, q, mode, instructions) for q in questions]
    texts = generate_chat(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    steps = list(data["steps"]) if "steps" in getattr(data, "column_names", data) else None
    return score_outputs(texts, list(data["answer"]), mode, steps)
