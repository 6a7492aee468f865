"""Train a tiny instruct LM (chat template, step-by-step or direct answers) with the CODI trainer's loop.

Each training problem is rendered as one chat conversation with the tokenizer's own chat
template: the user turn is the question, a space and an instruction (mode "cot" or "direct",
drawn per problem with a seeded RNG, `direct_fraction` of them direct; optionally "none", the
question alone); the assistant turn is the chain of thought `<< a op b = c >> …` followed by
"The answer is : N" (cot) or just "The answer is : N" (direct), then eos. The loss is plain
cross-entropy on the assistant turn: the layout is the CODI teacher's (`encode.collate`: prompt
left-padded with -100 labels, assistant turn right-padded), so `trainer.train` runs it as a
teacher-only run (`teacher_warmup_steps = steps`) with this module's setup, examples, evaluator
and saver. The result is a plain HF GPT-2 directory plus `instruct.json` (the instructions).

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
from torch import nn

from ..instruct import COT_INSTRUCTION, DIRECT_INSTRUCTION, INSTRUCT_FILE, evaluate_instruct, user_message
from ..models.projection import build_projection
from ..tokenization import build_word_tokenizer, special_ids
from .base import build_tiny_gpt2, init_number_embeddings
from .config import TrainConfig
from .encode import Encoded, prepare_cot
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base != "tiny-gpt2":
            raise ValueError("the instruct trainer builds the tiny word-level GPT-2 only (base='tiny-gpt2')")
        if not (0 <= self.direct_fraction and 0 <= self.none_fraction and self.direct_fraction + self.none_fraction <= 1):
            raise ValueError("direct_fraction and none_fraction must be >= 0 and sum to <= 1")
        if not self.cot_instructions or not self.direct_instructions:
            raise ValueError("give at least one instruction per mode")
        if self.steps is None:
            raise ValueError("the instruct trainer needs a step count (steps)")
        # teacher-only CE over the assistant turn for the whole run
        self.teacher_warmup_steps = 10**9

    def instructions(self) -> dict[str, list[str]]:
        return {"cot": list(self.cot_instructions), "direct": list(self.direct_instructions)}


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]+", text)


def build_instruct_tokenizer(cfg: InstructConfig):
    """The word-level tokenizer (synthetic vocabulary + instruction words, numbers 0..max_number),
    role tokens as special tokens, and `cfg.chat_template` as its chat template."""
    from ..data.synthetic import template_words

    words = set(template_words())
    for text in [*cfg.cot_instructions, *cfg.direct_instructions]:
        words.update(w for w in _words(text) if not w.isdigit())
    tok = build_word_tokenizer(sorted(words), max_number=cfg.max_number)
    tok.add_special_tokens({"additional_special_tokens": list(ROLE_TOKENS)}, replace_extra_special_tokens=False)
    tok.chat_template = cfg.chat_template
    return tok


def build_instruct_setup(cfg: InstructConfig) -> Setup:
    """Tokenizer, the seeded tiny GPT-2 (Fourier number init) and an unused projection (the loop's `Setup`)."""
    tok = build_instruct_tokenizer(cfg)
    model = build_tiny_gpt2(tok, n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head, seed=cfg.seed)
    init_number_embeddings(model, tok, cfg.max_number, cfg.number_init)
    torch.manual_seed(cfg.seed + 1)
    prj = build_projection(cfg.n_embd, cfg.n_embd)  # the loop's Setup carries one; no loss reaches it
    model.to(cfg.device)
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


def assistant_text(cot: str, answer: str, mode: str, template: str) -> str:
    """The assistant turn: CoT (all steps) + answer for "cot" (and "none"), the answer alone for "direct"."""
    final = template.format(answer=str(answer).strip())
    if mode == "direct":
        return final
    chain = prepare_cot(cot, include_last=True)
    return f"{chain} {final}" if chain else final


def encode_instruct_dataset(tokenizer, data, cfg: InstructConfig) -> tuple[list[Encoded], list[str]]:
    """`(examples, modes)`: chat prompt ids (labels masked) and assistant-turn ids (+ eos) per problem.

    The prompt is `apply_chat_template([user], add_generation_prompt=True)`; the assistant ids are
    the tokens the full conversation adds after it (checked equal on the first problem).
    """
    modes = assign_modes(len(data), cfg)
    convs = [[{"role": "user", "content": user_message(q, "none") + (f" {text}" if text else "")}]
             for q, (_, text) in zip(data["question"], modes)]
    prompts = tokenizer.apply_chat_template(convs, tokenize=False, add_generation_prompt=True)
    replies = [assistant_text(c, a, m, cfg.answer_template) for c, a, (m, _) in zip(data["cot"], data["answer"], modes)]
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer([f"{r} {tokenizer.eos_token}" for r in replies], add_special_tokens=False)["input_ids"]
    full = tokenizer.apply_chat_template(convs[0] + [{"role": "assistant", "content": replies[0]}], tokenize=False)
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if full_ids[: len(p_ids[0]) + len(r_ids[0])] != p_ids[0] + r_ids[0]:
        raise ValueError("the chat template's generation prompt is not a prefix of the rendered conversation")
    examples = [Encoded(list(p), [], list(r), 0) for p, r in zip(p_ids, r_ids)]
    return examples, [m for m, _ in modes]


def save_instruct(directory: Path, lm: nn.Module, setup: Setup, cfg: InstructConfig) -> Path:
    """Write a plain HF model directory (safetensors, tokenizer with chat template) + `instruct.json`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lm.generation_config.eos_token_id = setup.ids["eos_id"]
    lm.generation_config.pad_token_id = setup.ids["pad_id"]
    lm.save_pretrained(directory)
    setup.tokenizer.save_pretrained(directory)
    meta = {"instructions": cfg.instructions(), "answer_template": cfg.answer_template,
            "train_seed": cfg.seed, "test_seed": cfg.test_seed, "direct_fraction": cfg.direct_fraction,
            "none_fraction": cfg.none_fraction,
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
    (Path(cfg.out) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def instruct_report(cfg: InstructConfig, directory: str | Path | None = None, size: int | None = None,
                    modes: tuple[str, ...] = ("cot", "direct", "none")) -> dict:
    """Measure the saved model on `size` (default `eval_size`) problems of seed `test_seed + 1`
    (never used in training) with each instruction; writes `report.json` / `report.md` in `cfg.out`."""
    import time

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..instruct import chain_steps, load_instructions
    from .report import unseen_problems

    out = Path(cfg.out)
    directory = Path(directory) if directory else out / "model"
    model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    data = unseen_problems(cfg, size)
    instructions = load_instructions(directory)
    report: dict = {"model_dir": str(directory), "heldout_seed": cfg.test_seed + 1, "n": len(data), "modes": {}}
    md = [f"# Held-out report for {directory}", "",
          f"{len(data)} problems of seed {cfg.test_seed + 1} (never used in training), greedy, "
          f"{cfg.max_new_tokens} new tokens at most.", "",
          "| instruction | accuracy | with a chain | accuracy 2 / 3 steps | chain 2 / 3 steps | mean equations |",
          "|---|---|---|---|---|---|"]
    for mode in modes:
        t0 = time.time()
        r = evaluate_instruct(model, tok, data, mode, instructions, max_new_tokens=cfg.max_new_tokens)
        entry = r.summary()
        entry["seconds"] = round(time.time() - t0, 1)
        entry["mean_equations"] = sum(chain_steps(t) for t in r.texts) / max(1, r.n)
        entry["examples"] = [{"question": data[i]["question"], "gold": data[i]["answer"], "output": r.texts[i]}
                             for i in range(5)]
        report["modes"][mode] = entry
        md.append(f"| {mode} | {100 * r.accuracy:.1f}% | {100 * r.chain_rate:.1f}% | "
                  + " / ".join(f"{100 * v:.1f}" for v in r.accuracy_by_steps.values()) + " | "
                  + " / ".join(f"{100 * v:.1f}" for v in r.chain_rate_by_steps.values())
                  + f" | {entry['mean_equations']:.2f} |")
    md += ["", "Examples:", ""]
    for mode, entry in report["modes"].items():
        for ex in entry["examples"][:2]:
            md.append(f"- {mode}: `{ex['question']}` → `{ex['output']}` (gold {ex['gold']})")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text("\n".join(md) + "\n")
    return report
