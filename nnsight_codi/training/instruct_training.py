"""Train a tiny instruct LM (chat template, step-by-step or direct answers) with the CODI trainer's loop.

Each training problem is rendered as one chat conversation with the tokenizer's own chat
template: the user turn is the question, a space and an instruction (mode "cot" or "direct",
drawn per problem with a seeded RNG, `direct_fraction` of them direct; optionally "none", the
question alone); the assistant turn is the chain of thought `<< a op b = c >> …` followed by
"The answer is : N" (cot) or just "The answer is : N" (direct), then eos. The loss is plain
cross-entropy on the assistant turn: the layout is the CODI teacher's (`encode.collate`: prompt
left-padded with -100 labels, assistant turn right-padded), so `trainer.train` runs it as a
teacher-only run (`teacher_warmup_steps = steps`) with this module's setup, examples, evaluator
and saver. The result is a plain HF GPT-2 directory plus `instruct.json` (the instructions); its held-out
reports are `training.report.instruct_report`, `paraphrase_report` and `carry_report`.

Example:
    >>> cfg = InstructConfig(out="out/tiny-instruct", steps=2000)          # doctest: +SKIP
    >>> train_instruct(cfg)                                                # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from ..data.rows import Encoded, prepare_cot
from ..instruct import (
    COT_INSTRUCTION,
    DIRECT_INSTRUCTION,
    INSTRUCT_FILE,
    evaluate_instruct,
    with_instruction,
)
from ..models.model_sources import shipped_name
from ..models.projection import build_projection
from ..tokenization import build_word_tokenizer, special_ids
from .base import build_tiny_gpt2, embedding_matrix, init_number_embeddings
from .train_config import TrainConfig
from .trainer import Setup, load_data, train

ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|> ' + message['content'] + ' ' + eos_token + ' ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@dataclass
class InstructConfig(TrainConfig):
    """`TrainConfig` plus the instruct options (the CODI-only fields are unused).

    Attributes:
        cot_instructions / direct_instructions: instruction texts per mode; the first is the
            canonical one (recorded in `instruct.json`), others are paraphrases drawn uniformly.
        direct_fraction / none_fraction: share of training problems in direct / no-instruction mode.
        chat_template: the Jinja chat template stored in the tokenizer (roles `<|role|>`, turns end in eos).
        max_new_tokens: generation budget of the evaluations.
        none_reply: what a problem without instruction is trained to answer ("cot": the chain, as
            the first shipped model's code did; "direct": the answer alone).
        heldout_cot_instructions / heldout_direct_instructions: paraphrases never trained on (their
            words join the vocabulary; the report measures them); recorded in `instruct.json`.
        init_from: warm start from this instruct model directory (its weights and tokenizer; words
            of the instructions missing from its vocabulary are appended with new ids, their
            embeddings initialised at the mean word embedding plus seeded noise).
        carry_fraction: share of problems trained as "the reply keeps the mode its first token
            chose": the reply of the *other* mode than the instruction asks for, its first token
            given in the context (not trained on). The first reply token is then the only place
            the instruction decides the mode, and everything after it follows the reply so far
            (`carry_flags`).
    """

    out: str = "out/tiny-instruct"
    cot_instructions: list[str] = field(default_factory=lambda: [COT_INSTRUCTION])
    direct_instructions: list[str] = field(default_factory=lambda: [DIRECT_INSTRUCTION])
    direct_fraction: float = 0.5
    none_fraction: float = 0.0
    chat_template: str = CHAT_TEMPLATE
    max_new_tokens: int = 48
    number_init: str = "fourier"
    num_latents: int = 0
    none_reply: str = "cot"
    heldout_cot_instructions: list[str] = field(default_factory=list)
    heldout_direct_instructions: list[str] = field(default_factory=list)
    init_from: str | None = None
    carry_fraction: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base != "tiny-gpt2":
            raise ValueError("the instruct trainer builds the tiny word-level GPT-2 only (base='tiny-gpt2')")
        if not (0 <= self.direct_fraction and 0 <= self.none_fraction and self.direct_fraction + self.none_fraction <= 1):
            raise ValueError("direct_fraction and none_fraction must be >= 0 and sum to <= 1")
        if not 0 <= self.carry_fraction <= 1:
            raise ValueError(f"carry_fraction must be in [0, 1], got {self.carry_fraction}")
        if not self.cot_instructions or not self.direct_instructions:
            raise ValueError("give at least one instruction per mode")
        if self.none_reply not in ("cot", "direct"):
            raise ValueError(f"none_reply must be 'cot' or 'direct', got {self.none_reply!r}")
        trained = set(self.cot_instructions) | set(self.direct_instructions)
        leaked = trained & (set(self.heldout_cot_instructions) | set(self.heldout_direct_instructions))
        if leaked:
            raise ValueError(f"held-out instructions are also trained: {sorted(leaked)}")
        if self.steps is None:
            raise ValueError("the instruct trainer needs a step count (steps)")
        # teacher-only CE over the assistant turn for the whole run
        self.teacher_warmup_steps = 10**9

    def instructions(self) -> dict[str, list[str]]:
        return {"cot": list(self.cot_instructions), "direct": list(self.direct_instructions)}

    def all_instruction_texts(self) -> list[str]:
        return [*self.cot_instructions, *self.direct_instructions, *self.heldout_cot_instructions,
                *self.heldout_direct_instructions]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]+", text)


def build_instruct_tokenizer(cfg: InstructConfig):
    """The word-level tokenizer (synthetic vocabulary + instruction words, numbers 0..max_number),
    role tokens as special tokens, and `cfg.chat_template` as its chat template.
    """
    from ..data.synthetic import template_words

    words = set(template_words())
    for text in cfg.all_instruction_texts():
        words.update(w for w in _words(text) if not w.isdigit())
    tok = build_word_tokenizer(sorted(words), max_number=cfg.max_number)
    tok.add_special_tokens({"additional_special_tokens": list(ROLE_TOKENS)}, replace_extra_special_tokens=False)
    tok.chat_template = cfg.chat_template
    return tok


def extend_word_tokenizer(tokenizer, words, directory: str | Path):
    """A copy of a word-level tokenizer with `words` missing from its vocabulary appended (new ids
    after every existing one, so all old ids keep their meaning); saved to and loaded from `directory`.
    """
    directory = Path(directory)
    tokenizer.save_pretrained(directory)
    path = directory / "tokenizer.json"
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    # added tokens (the role tokens) that the word model lacks are given their ids in it too:
    # `tokenizers` numbers such tokens from the model's vocabulary size on load, so words
    # appended after them would otherwise take their ids
    for t in data.get("added_tokens", []):
        vocab.setdefault(t["content"], t["id"])
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError(f"{directory}: the tokenizer's ids are not 0..{len(vocab) - 1} without gaps")
    taken = set(vocab)
    next_id = len(vocab)
    for word in sorted(set(words) - taken):
        vocab[word] = next_id
        next_id += 1
    path.write_text(json.dumps(data, ensure_ascii=False))
    extended = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    moved = {w: i for w, i in tokenizer.get_vocab().items() if extended.convert_tokens_to_ids(w) != i}
    if moved:
        raise ValueError(f"extending the vocabulary moved token ids: {moved}")
    return extended


def warm_start_setup(cfg: InstructConfig) -> Setup:
    """The `Setup` of a continued run: the model and tokenizer of `cfg.init_from`, the vocabulary
    extended by the instruction words it lacks (embedding rows: mean word embedding + seeded noise).
    """
    if cfg.init_from is None:
        raise ValueError("warm_start_setup needs cfg.init_from")
    src = Path(cfg.init_from)
    tok = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    words = {w for text in cfg.all_instruction_texts() for w in _words(text) if not w.isdigit()}
    tok = extend_word_tokenizer(tok, words, Path(cfg.out) / "tokenizer")
    tok.chat_template = cfg.chat_template
    model = AutoModelForCausalLM.from_pretrained(str(src), local_files_only=True, dtype=torch.float32)
    old = embedding_matrix(model).shape[0]
    new = max(len(tok), 1 + max(tok.get_vocab().values()))
    if new > old:
        emb = embedding_matrix(model).detach()
        word_rows = emb[cfg.max_number + 2: old - 6]  # the words (after <unk>, <eos>, numbers; before specials)
        model.resize_token_embeddings(new, mean_resizing=False)
        gen = torch.Generator().manual_seed(cfg.seed + 17)
        noise = torch.randn(new - old, emb.shape[1], generator=gen) * word_rows.std(0)
        with torch.no_grad():
            embedding_matrix(model)[old:] = word_rows.mean(0) + 0.5 * noise
    torch.manual_seed(cfg.seed + 1)
    prj = build_projection(cfg.n_embd, cfg.n_embd)
    model.to(cfg.device)  # pyright: ignore[reportArgumentType]  (transformers wraps .to with functools.wraps)
    return Setup(model, prj, tok, special_ids(tok))


def build_instruct_setup(cfg: InstructConfig) -> Setup:
    """Tokenizer, the seeded tiny GPT-2 (Fourier number init) and an unused projection (the loop's `Setup`);
    with `cfg.init_from`, the warm-started model instead (`warm_start_setup`).
    """
    if cfg.init_from:
        return warm_start_setup(cfg)
    tok = build_instruct_tokenizer(cfg)
    model = build_tiny_gpt2(tok, n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head, seed=cfg.seed)
    init_number_embeddings(model, tok, cfg.max_number, cfg.number_init)
    torch.manual_seed(cfg.seed + 1)
    prj = build_projection(cfg.n_embd, cfg.n_embd)  # the loop's Setup carries one; no loss reaches it
    model.to(cfg.device)  # pyright: ignore[reportArgumentType]  (transformers wraps .to with functools.wraps)
    return Setup(model, prj, tok, special_ids(tok))


def assign_modes(n: int, cfg: InstructConfig) -> list[tuple[str, str]]:
    """`(mode, instruction text)` per training problem, seeded by `cfg.seed`."""
    rng = random.Random(cfg.seed * 7919 + 11)
    table = cfg.instructions()
    out = []
    for _ in range(n):
        u = rng.random()
        mode = "direct" if u < cfg.direct_fraction else ("none" if u < cfg.direct_fraction + cfg.none_fraction
                                                          else "cot")
        text = "" if mode == "none" else table[mode][rng.randrange(len(table[mode]))]
        out.append((mode, text))
    return out


def carry_flags(n: int, cfg: InstructConfig) -> list[bool]:
    """Which training problems carry the other mode (`cfg.carry_fraction` of them, seeded by `cfg.seed`;
    an RNG of its own, so `assign_modes` is the same with and without carried problems).

        >>> sum(carry_flags(1000, InstructConfig(steps=1, carry_fraction=0.2)))
        186
        >>> any(carry_flags(1000, InstructConfig(steps=1)))
        False
    """
    if cfg.carry_fraction <= 0:
        return [False] * n
    rng = random.Random(cfg.seed * 104729 + 17)
    return [rng.random() < cfg.carry_fraction for _ in range(n)]


def reply_mode(mode: str, cfg: InstructConfig, carried: bool = False) -> str:
    """The mode of the reply trained for an instruction `mode` ("cot" | "direct" | "none"): "none"
    answers as `cfg.none_reply`; a carried problem gets the other mode's reply.

        >>> cfg = InstructConfig(steps=1, none_reply="direct")
        >>> reply_mode("none", cfg), reply_mode("none", cfg, carried=True), reply_mode("cot", cfg, carried=True)
        ('direct', 'cot', 'direct')
    """
    reply = cfg.none_reply if mode == "none" else mode
    return {"cot": "direct", "direct": "cot"}[reply] if carried else reply


def assistant_text(cot: str, answer: str, mode: str, template: str) -> str:
    """The assistant turn: CoT (all steps) + answer for "cot" (and "none"), the answer alone for "direct"."""
    final = template.format(answer=str(answer).strip())
    if mode == "direct":
        return final
    chain = prepare_cot(cot, include_last=True)
    return f"{chain} {final}" if chain else final


def encode_instruct_dataset(tokenizer, data, cfg: InstructConfig) -> tuple[list[Encoded], list[str]]:
    """`(examples, modes)`: chat prompt ids (labels masked) and assistant-turn ids (+ eos) per problem
    (a carried problem, `carry_flags`: the other mode's reply, its first token moved into the prompt).

    The prompt is `apply_chat_template([user], add_generation_prompt=True)`; the assistant ids are
    the tokens the full conversation adds after it (checked equal on the first problem).
    """
    modes = assign_modes(len(data), cfg)
    convs = [[{"role": "user", "content": with_instruction(q, text)}]
             for q, (_, text) in zip(data["question"], modes)]
    prompts = tokenizer.apply_chat_template(convs, tokenize=False, add_generation_prompt=True)
    carried = carry_flags(len(data), cfg)
    replies = [assistant_text(c, a, reply_mode(m, cfg, k), cfg.answer_template)
               for c, a, (m, _), k in zip(data["cot"], data["answer"], modes, carried)]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer([f"{r} {tokenizer.eos_token}" for r in replies], add_special_tokens=False)["input_ids"]
    full = tokenizer.apply_chat_template(convs[0] + [{"role": "assistant", "content": replies[0]}], tokenize=False)
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if full_ids[: len(p_ids[0]) + len(r_ids[0])] != p_ids[0] + r_ids[0]:
        raise ValueError("the chat template's generation prompt is not a prefix of the rendered conversation")
    # a carried problem's first reply token joins the (unlabelled) prompt: the instruction trains
    # that token only on problems that follow it, the rest of the reply follows the reply's start
    examples = [Encoded(list(p) + list(r[:1]), [], list(r[1:]), 0) if k else Encoded(list(p), [], list(r), 0)
                for p, r, k in zip(p_ids, r_ids, carried)]
    return examples, [m for m, _ in modes]


def _source_name(init_from: str | None) -> str | None:
    """A shipped model's name (`tiny-instruct-v2`), else the path as given: what `instruct.json` records."""
    return None if init_from is None else shipped_name(init_from) or init_from


def save_instruct(directory: Path, lm: PreTrainedModel, setup: Setup, cfg: InstructConfig) -> Path:
    """Write a plain HF model directory (safetensors, tokenizer with chat template) + `instruct.json`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lm.generation_config.eos_token_id = setup.ids["eos_id"]
    lm.generation_config.pad_token_id = setup.ids["pad_id"]
    lm.save_pretrained(directory)
    setup.tokenizer.save_pretrained(directory)
    meta = {"instructions": cfg.instructions(), "answer_template": cfg.answer_template,
            "heldout_instructions": {"cot": list(cfg.heldout_cot_instructions),
                                     "direct": list(cfg.heldout_direct_instructions)},
            "train_seed": cfg.seed, "test_seed": cfg.test_seed, "direct_fraction": cfg.direct_fraction,
            "none_fraction": cfg.none_fraction, "none_reply": cfg.none_reply, "init_from": _source_name(cfg.init_from),
            "carry_fraction": cfg.carry_fraction,
            "synthetic_options": {"min_steps": cfg.min_steps, "max_steps": cfg.max_steps,
                                  "value_range": [0, cfg.value_max], "add_range": [1, cfg.add_max],
                                  "mul_range": [2, cfg.mul_max], "ops": cfg.ops}}
    (directory / INSTRUCT_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def instruct_evaluator(cfg: InstructConfig):
    """The periodic evaluation: accuracy and chain rate with each instruction on the held-out sample."""
    instructions = {"cot": cfg.cot_instructions[0], "direct": cfg.direct_instructions[0]}

    def run(setup: Setup, data) -> dict:
        setup.model.eval()
        res = {}
        for mode in ("cot", "direct"):
            r = evaluate_instruct(setup.model, setup.tokenizer, data, mode, instructions,
                                  max_new_tokens=cfg.max_new_tokens)
            res[f"{mode}_acc"] = round(r.accuracy, 4)
            res[f"{mode}_chain"] = round(r.chain_rate, 4)
        return res

    return run


def train_instruct(cfg: InstructConfig, resume: bool = False, data=None, stop_at: int | None = None) -> dict:
    """Train as configured (`trainer.train` with the instruct setup); the model lands in `cfg.out/model`."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    setup = build_instruct_setup(cfg)
    train_data, eval_data = data if data is not None else load_data(cfg)
    examples, modes = encode_instruct_dataset(setup.tokenizer, train_data, cfg)
    metrics = train(cfg, resume=resume, data=(train_data, eval_data), stop_at=stop_at, setup=setup, examples=examples,
                    evaluator=instruct_evaluator(cfg),
                    saver=lambda directory, lm, s: save_instruct(directory, lm, s, cfg))
    metrics["train_modes"] = {m: modes.count(m) for m in ("cot", "direct", "none")}
    metrics["carried"] = sum(carry_flags(len(train_data), cfg))
    (Path(cfg.out) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


