"""`SoftThinkingModel`: a plain instruct LM run by the one latent loop under Soft Thinking.

It is a `CodiModel` of the family `soft_thinking` (`models.soft_thinking`): the prompt is the question as one
user turn through the tokenizer's chat template, then the `bot` marker; latent steps are fed the soft
input (probability-weighted top-k embeddings) until K or the cold stop; the `eot` marker closes the thinking
and the answer is decoded greedily. No weights change: there is no projection (`use_prj=False`).
Build it with `nnsight_codi.loading.load_soft_thinking`.
"""

from __future__ import annotations

from typing import Any

from ..models.family import Feedback
from ..models.soft_thinking import SoftThinking
from .codi_model import CodiModel


class SoftThinkingModel(CodiModel):
    """An instruct LM under Soft Thinking (see the module doc); `soft` is the default condition."""

    def __init__(self, *args: Any, soft: SoftThinking, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "soft", soft)

    def prompt_ids(self, question: str) -> list[int]:
        """`[chat prompt of the question] bot` (the template holds every special token)."""
        messages = [{"role": "user", "content": question.strip() + self.codi_config.prompt_suffix}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.codi_config.bot_id]

    def condition_feedback(self, name: str | None) -> Feedback | None:
        """None / "latent" / "soft": this model's Soft Thinking condition; "pause": the constant bot embedding."""
        if name in (None, "", "latent", "soft"):
            return self.soft
        return super().condition_feedback(name)
