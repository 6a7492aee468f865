"""Tokenize one (question, cot, answer) row into its CODI pieces: question, CoT and answer ids (`Encoded`).

Follows the reference's preprocessing (codi.md §3): each piece is tokenized separately and
concatenated with no separator; the question keeps the tokenizer's own specials (e.g. a Llama
BOS), CoT and answer pieces do not; the answer piece ends with eos (`ans = tok(answer_template.format(answer=N))
+ eos`). The distilled token is the one just before the answer number's first token (":" for the
word tokenizer and GPT-2, " " for Llama), located with character offsets. `training.encode.collate`
lays the pieces out as teacher and student sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chains import step_spans


def clean_question(question: str, prompt_suffix: str = "") -> str:
    """The prompt text: `question.strip().replace('  ', ' ') + prompt_suffix` (the inference convention)."""
    return question.strip().replace("  ", " ") + prompt_suffix


def cot_steps(cot: str) -> list[str]:
    """Split a CoT into steps: `<<...>>` equations if present, else the space-separated words."""
    steps = step_spans(cot)
    return steps if steps else cot.split(" ")


def prepare_cot(cot: str, include_last: bool) -> str:
    """The CoT text trained on: all steps, or all but the last (the reference's default)."""
    steps = cot_steps(cot.strip())
    if not include_last:
        steps = steps[:-1]
    return " ".join(steps)


@dataclass
class Encoded:
    """One tokenized example. `distill_index` indexes into `answer` (the token before the number)."""

    question: list[int]
    cot: list[int]
    answer: list[int]
    distill_index: int


def encode_answer(tokenizer, answer: str, template: str) -> tuple[list[int], int]:
    """`(ids of template.format(answer) + [eos], index of the token before the number)`."""
    text = template.format(answer=answer)
    start = len(text) - len(answer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    first = next((i for i, (_, end) in enumerate(offsets) if end > start), None)
    if first is None or first == 0:
        raise ValueError(f"cannot locate the answer number in the tokenized answer {text!r}")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token")
    return list(ids) + [tokenizer.eos_token_id], first - 1


def encode_example(tokenizer, question: str, cot: str, answer: str, *, template: str,
                   include_last_cot: bool = True, prompt_suffix: str = "") -> Encoded:
    """Tokenize one row (see the module doc)."""
    q = tokenizer(clean_question(question, prompt_suffix))["input_ids"]
    cot_text = prepare_cot(cot, include_last_cot)
    c = tokenizer(cot_text, add_special_tokens=False)["input_ids"] if cot_text else []
    a, d = encode_answer(tokenizer, str(answer).strip(), template)
    return Encoded(list(q), list(c), a, d)
