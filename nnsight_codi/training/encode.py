"""Lay tokenized (question, cot, answer) rows (`data.rows.Encoded`) out as CODI teacher and student sequences.

Each piece is tokenized separately (`data.rows.encode_example`, the reference's preprocessing, codi.md §3)
and concatenated with no separator; the question keeps the tokenizer's own specials (e.g. a Llama
BOS), CoT and answer pieces do not; the answer piece ends with eos.

    teacher  = q + cot + ans                     labels: -100 on q (q left-padded, rest right-padded)
    prompt   = q (+ eos if not remove_eos) + bot  (left-padded in batches)
    decoder  = eot (+ eos if not remove_eos) + ans
    ans      = tok(answer_template.format(answer=N)) + eos

The distilled token is the one just before the answer number's first token (":" for the
word tokenizer and GPT-2, " " for Llama), located with character offsets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.rows import Encoded
from ..tracing.batching import left_pad, right_pad


@dataclass
class Batch:
    """A collated batch.

    The teacher sequence is laid out so that its question part is exactly the student's
    prompt encoding: the questions are LEFT-padded to a common width `question_width`, and
    cot + answer follow, RIGHT-padded. With the attention mask and position ids counting
    real tokens only, the teacher's hidden states (and KV cache) over the first
    `question_width` positions equal the student's prompt call on `q`, so the student can
    reuse them (`codi.codi_losses(shared_prompt=True)`).

    Attributes:
        teacher_ids: `Long[Tensor, "batch t"]` [pads, q | cot, ans, pads]; `teacher_mask` likewise.
        teacher_labels: `Long[Tensor, "batch t"]` with -100 on question and padding.
        teacher_distill: `Long[Tensor, "batch"]` position of the distilled token in the teacher.
        question_width: width of the left-padded question block.
        prompt_ids, prompt_mask: `Long[Tensor, "batch p"]` left-padded q (+eos) + bot.
        student_suffix: `Long[Tensor, "batch s"]` what follows q in the prompt: (eos +) bot.
        decoder_ids: `Long[Tensor, "batch s"]` right-padded eot (+eos) + ans (pads = pad_id).
        decoder_labels: `Long[Tensor, "batch s"]` = decoder_ids with -100 on padding.
        student_distill: `Long[Tensor, "batch"]` position of the distilled token in the decoder.
        answers: the answer strings.
    """

    teacher_ids: Tensor
    teacher_mask: Tensor
    teacher_labels: Tensor
    teacher_distill: Tensor
    question_width: int
    prompt_ids: Tensor
    prompt_mask: Tensor
    student_suffix: Tensor
    decoder_ids: Tensor
    decoder_labels: Tensor
    student_distill: Tensor
    answers: list[str]

    def to(self, device: str | torch.device) -> "Batch":
        return dataclasses.replace(self, **{k: v.to(device) for k, v in self.__dict__.items() if isinstance(v, Tensor)})


def collate(examples: list[Encoded], *, pad_id: int, bot_id: int, eot_id: int, eos_id: int,
            remove_eos: bool = True, answers: list[str] | None = None) -> Batch:
    """Pad a list of `Encoded` into a `Batch` (see its doc for the layout)."""
    if not examples:
        raise ValueError("collate: empty batch")
    q_ids, q_mask = left_pad([e.question for e in examples], pad_id)
    r_ids, r_mask = right_pad([e.cot + e.answer for e in examples], pad_id)
    width = q_ids.shape[1]
    t_ids = torch.cat([q_ids, r_ids], dim=1)
    t_mask = torch.cat([q_mask, r_mask], dim=1)
    t_labels = t_ids.clone()
    t_labels[t_mask == 0] = -100
    t_labels[:, :width] = -100
    t_pos = torch.tensor([width + len(e.cot) + e.distill_index for e in examples])
    extra = [] if remove_eos else [eos_id]
    p_ids, p_mask = left_pad([e.question + extra + [bot_id] for e in examples], pad_id)
    suffix = torch.tensor([extra + [bot_id]] * len(examples), dtype=torch.long)
    d_ids, d_mask = right_pad([[eot_id] + extra + e.answer for e in examples], pad_id)
    d_labels = d_ids.clone()
    d_labels[d_mask == 0] = -100
    s_pos = torch.tensor([1 + len(extra) + e.distill_index for e in examples])
    return Batch(t_ids, t_mask, t_labels, t_pos, width, p_ids, p_mask, suffix, d_ids, d_labels, s_pos,
                 answers or [])
