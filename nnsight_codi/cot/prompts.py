"""Chain-of-thought vs direct prompts through a model's chat template, and chain detection.

Each question is asked twice (Zhang & Viteri): with the CoT instruction and with the direct one,
inside one user turn of the model's chat template, ending with the generation prompt. The prompt
is `nnsight_codi.instruct.instruct_prompt` (the one the tiny instruct model was trained with) and
chain detection is `instruct.contains_chain`, extended to prose equations (`16 - 3 = 13`, as real
instruct LMs write them) when an output has no `<< … >>` markup.

Example:
    >>> from transformers import PreTrainedTokenizerFast
    >>> tok = word_chat_tokenizer()
    >>> build_prompt(tok, "Tom has 3 pens .", "direct")
    'User : Tom has 3 pens . Answer the question immediately, without any elaboration. Assistant :'
    >>> writes_chain("<< 4 * 6 = 24 >> << 24 - 3 = 21 >> The answer is: 21")
    True
    >>> writes_chain("The answer is: 21")
    False
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..data.chains import has_annotation, has_prose_equation, prose_equations
from ..instruct import COT_INSTRUCTION, DIRECT_INSTRUCTION, instruct_prompt  # the paper's two instructions
from ..tokenization import build_word_tokenizer

MODES = ("cot", "direct")  # the two prompts a CoT vector contrasts
PROMPT_MODES = (*MODES, "none")  # "none": the question alone, no instruction


@dataclass(frozen=True)
class Instructions:
    """The two instructions appended to every question (both configurable)."""

    cot: str = COT_INSTRUCTION
    direct: str = DIRECT_INSTRUCTION

    def for_mode(self, mode: str) -> str:
        """The instruction of `mode`; "none" (the question alone) is ""."""
        if mode not in PROMPT_MODES:
            raise ValueError(f"prompt mode must be one of {PROMPT_MODES}, got {mode!r}")
        return {"cot": self.cot, "direct": self.direct, "none": ""}[mode]


def require_chat_template(tokenizer, what: str = "the CoT/direct prompts") -> None:
    """Raise a clear `ValueError` when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(f"{name} has no chat template, which {what} need: use an instruct/chat model "
                         "(or set tokenizer.chat_template)")


def build_prompt(tokenizer, question: str, mode: str, instructions: Instructions = Instructions()) -> str:
    """The prompt text for `question` in `mode` ("cot" | "direct" | "none"): one user turn + generation prompt."""
    require_chat_template(tokenizer)
    instructions.for_mode(mode)  # validates the mode
    return instruct_prompt(tokenizer, question, mode, {"cot": instructions.cot, "direct": instructions.direct,
                                                       "none": ""})


def prompt_ids(tokenizer, question: str, mode: str, instructions: Instructions = Instructions()) -> list[int]:
    """Token ids of `build_prompt(...)` (the template already holds any special tokens)."""
    return tokenizer(build_prompt(tokenizer, question, mode, instructions), add_special_tokens=False)["input_ids"]


def writes_chain(text: str) -> bool:
    """True when an output reasons: a `<< … = … >>` chain step (`instruct.contains_chain`) or, in
    outputs without that markup, an intermediate equation in prose.
    """
    return has_annotation(text) or ("<<" not in text and has_prose_equation(text))


def chain_equations(text: str) -> list[str]:
    """The intermediate equations an output writes, in order, normalised (`a op b = c`, no spaces).

    Steps marked `<< … >>` and prose equations are both read, so a chain whose opening `<<` is
    missing still counts.

        >>> chain_equations("<< 5 * 6 = 30 >> << 30 + 5 = 35 >> The answer is : 35")
        ['5*6=30', '30+5=35']
        >>> chain_equations("30 * 6 = 60 >> The answer is : 60")
        ['30*6=60']
    """
    return prose_equations(text)


TEST_CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] | capitalize }} : {{ m['content'] }} {% endfor %}"
                      "{% if add_generation_prompt %}Assistant :{% endif %}")
"""A minimal chat template for word-level tokenizers: `User : … Assistant :`."""


def word_chat_tokenizer(max_number: int = 99):
    """A word-level tokenizer with the synthetic vocabulary, the instructions and `TEST_CHAT_TEMPLATE`."""
    from ..data.synthetic import template_words
    words = set(template_words()) | {"User", "Assistant", ":"}
    for text in (COT_INSTRUCTION, DIRECT_INSTRUCTION, "The answer is:"):
        words.update(re.findall(r"\w+|[^\w\s]+", text))
    tok = build_word_tokenizer(sorted(words), max_number=max_number)
    tok.chat_template = TEST_CHAT_TEMPLATE
    return tok
