"""Final held-out report of a trained run, computed from the saved converted directory.

Reloads `OUT/model` (so the shipped files are what is measured), regenerates the held-out
problems (synthetic: from `test_seed`, never used in training, plus a second unseen seed),
and measures: accuracy with K latents, a sweep over the number of latents (0..K+2), the
teacher's free-running explicit-CoT accuracy, and the logit-lens table. Writes
`OUT/report.json` and `OUT/report.md`.

The instruct model's (`training.instruct`) held-out reports are here too: `instruct_report` (accuracy and
chains per instruction), `paraphrase_report` (trained and held-out instruction paraphrases) and
`carry_report` (does a reply keep the mode its first token chose).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..instruct import (
    INSTRUCT_FILE,
    chain_steps,
    chat_prompt,
    evaluate_instruct,
    generate_chat,
    instruct_prompt,
    load_instructions,
    score_outputs,
    with_instruction,
)
from ..models.codi_config import CodiConfig
from ..models.converted import load_projection
from .train_config import TrainConfig
from .train_evaluator import evaluate_student, evaluate_teacher, lens_table, lens_top_tokens
from .trainer import load_data

if TYPE_CHECKING:
    from .instruct_training import InstructConfig


def load_trained(directory: str | Path):
    """`(model, prj, tokenizer, codi_config)` from a converted directory (offline)."""
    directory = Path(directory)
    cfg = CodiConfig.load(directory)
    model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    prj = load_projection(directory)
    return model, prj, tok, cfg


def unseen_problems(cfg: TrainConfig, size: int | None = None):
    """Synthetic problems of a synthetic run's distribution from seed `test_seed + 1`, which no
    part of training uses (`size` defaults to `eval_size`).
    """
    from ..data.synthetic import generate_problems

    return generate_problems(cfg.eval_size if size is None else size, cfg.test_seed + 1, min_steps=cfg.min_steps,
                             max_steps=cfg.max_steps, value_range=(0, cfg.value_max), add_range=(1, cfg.add_max),
                             mul_range=(2, cfg.mul_max), ops=cfg.ops)


def heldout_sets(cfg: TrainConfig) -> dict:
    """Named held-out datasets: the run's test split (and one more unseen seed if synthetic)."""
    if cfg.dataset == "synthetic":
        _, test = load_data(TrainConfig(**{**cfg.to_dict(), "train_size": 0}))
        return {f"seed{cfg.test_seed}": test, f"seed{cfg.test_seed + 1}": unseen_problems(cfg)}
    _, test = load_data(cfg)
    return {"heldout": test}


def _fmt_table(rows: list[list[float]], header: str) -> str:
    n_layers = len(rows[0])
    lines = [f"| {header} | " + " | ".join(f"layer {l}" for l in range(1, n_layers + 1)) + " |",
             "|---" * (n_layers + 1) + "|"]
    for s, row in enumerate(rows):
        name = "bot (step 0)" if s == 0 else f"latent {s}"
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in row) + " |")
    return "\n".join(lines)


def final_report(cfg: TrainConfig, directory: str | Path | None = None, sweep: bool = True,
                 check_disjoint_train: bool = True) -> dict:
    """Measure the saved model; returns the numbers and writes report.json / report.md in `cfg.out`."""
    out = Path(cfg.out)
    directory = Path(directory) if directory else out / "model"
    t0 = time.time()
    model, prj, tok, ccfg = load_trained(directory)
    load_s = time.time() - t0
    ids = {"pad_id": ccfg.pad_id, "bot_id": ccfg.bot_id, "eot_id": ccfg.eot_id, "eos_id": ccfg.eos_id}
    common: dict[str, Any] = dict(ids=ids, remove_eos=ccfg.remove_eos, prompt_suffix=ccfg.prompt_suffix)
    K = ccfg.num_latents
    report: dict = {"model_dir": str(directory), "load_seconds": round(load_s, 2), "num_latents": K, "sets": {}}
    if check_disjoint_train and cfg.dataset == "synthetic":
        from ..data.synthetic import generate_problems

        train_q = set(generate_problems(cfg.train_size, cfg.seed, min_steps=cfg.min_steps, max_steps=cfg.max_steps,
                                        value_range=(0, cfg.value_max), add_range=(1, cfg.add_max),
                                        mul_range=(2, cfg.mul_max), ops=cfg.ops)["question"])
    else:
        train_q = set()
    md = [f"# Held-out report for {directory}", ""]
    for name, data in heldout_sets(cfg).items():
        q, a = list(data["question"]), list(data["answer"])
        steps = list(data["steps"]) if "steps" in data.column_names else None
        entry: dict = {"n": len(q), "overlap_with_train": sum(x in train_q for x in q)}
        res = evaluate_student(model, prj, tok, q, a, num_latents=K, steps=steps, **common)
        entry[f"acc_k{K}"] = res.accuracy
        entry[f"acc_k{K}_by_steps"] = res.by_steps
        if sweep:
            entry["acc_by_num_latents"] = {k: evaluate_student(model, prj, tok, q, a, num_latents=k, **common).accuracy
                                           for k in range(0, K + 3)}
        entry["acc_k0"] = entry.get("acc_by_num_latents", {}).get(0) if sweep else \
            evaluate_student(model, prj, tok, q, a, num_latents=0, **common).accuracy
        rt = evaluate_teacher(model, tok, q, a, ids=ids, prompt_suffix=ccfg.prompt_suffix, steps=steps)
        entry["acc_teacher_cot"] = rt.accuracy
        entry["acc_teacher_cot_by_steps"] = rt.by_steps
        if "intermediates" in data.column_names:
            entry["lens"] = lens_table(model, prj, tok, q, list(data["intermediates"]), num_latents=K, **common)
        entry["examples"] = [{"question": q[i], "gold": a[i], "prediction": res.predictions[i],
                              "teacher": rt.predictions[i]} for i in range(5)]
        tops = lens_top_tokens(model, prj, tok, q[:5], num_latents=K, **common)
        for i, t in enumerate(tops):
            entry["examples"][i]["lens_top1_last_layer"] = t
        report["sets"][name] = entry
        md += [f"## {name} (n={len(q)}, overlap with train: {entry['overlap_with_train']})", "",
               f"- accuracy with K={K} latents: {100 * entry[f'acc_k{K}']:.1f}% "
               f"(by steps: {', '.join(f'{s}: {100 * v:.1f}%' for s, v in res.by_steps.items())})",
               f"- accuracy with 0 latents: {100 * entry['acc_k0']:.1f}%",
               f"- teacher explicit CoT accuracy: {100 * rt.accuracy:.1f}%"]
        if sweep:
            md.append("- by number of latents: " + ", ".join(f"K={k}: {100 * v:.1f}%"
                                                            for k, v in entry["acc_by_num_latents"].items()))
        lens = entry.get("lens")
        if lens and lens.get("n"):
            md += ["", f"Logit lens (n={lens['n']} problems with a non-final intermediate value): % of read-outs whose "
                   "top-1 token is an intermediate value (not the final answer)", "",
                   _fmt_table(lens["top1"], "top-1"), "", "Chance (scored against another problem's values):", "",
                   _fmt_table(lens["chance_top1"], "chance top-1"), "", f"top-{lens['top_k']}:", "",
                   _fmt_table(lens["topk"], f"top-{lens['top_k']}"), "", "Chance:", "",
                   _fmt_table(lens["chance_topk"], f"chance top-{lens['top_k']}"), ""]
        md.append("")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text("\n".join(md) + "\n")
    return {"report": str(out / "report.md"),
            **{f"{n}_{k}": v for n, e in report["sets"].items() for k, v in e.items()
               if k.startswith("acc_k") and not k.endswith("by_steps") or k == "acc_teacher_cot"}}


# -- the instruct model's held-out reports (`training.instruct`) ---------------------------------------

def _saved_model(cfg: InstructConfig, directory: str | Path | None):
    """`(directory, model, tokenizer)` of a saved instruct model (default `cfg.out/model`), float32, eval mode."""
    directory = Path(directory) if directory else Path(cfg.out) / "model"
    model = AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32).eval()
    return directory, model, AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def instruct_report(cfg: InstructConfig, directory: str | Path | None = None, size: int | None = None,
                    modes: tuple[str, ...] = ("cot", "direct", "none")) -> dict:
    """Measure the saved model on `size` (default `eval_size`) problems of seed `test_seed + 1`
    (never used in training) with each instruction; writes `report.json` / `report.md` in `cfg.out`.
    """
    out = Path(cfg.out)
    directory, model, tok = _saved_model(cfg, directory)
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


def paraphrase_families(meta: dict) -> dict[str, tuple[str, list[str]]]:
    """`{family: (trained reply mode, instruction texts)}` from an `instruct.json`: trained and
    held-out paraphrases per mode, and `none` (the question alone).
    """
    held = meta.get("heldout_instructions", {})
    none_reply = meta.get("none_reply", "cot")
    fams = {"cot_trained": ("cot", meta["instructions"]["cot"]),
            "direct_trained": ("direct", meta["instructions"]["direct"])}
    if held.get("cot"):
        fams["cot_heldout"] = ("cot", held["cot"])
    if held.get("direct"):
        fams["direct_heldout"] = ("direct", held["direct"])
    fams["none"] = (none_reply, [""])
    return fams


def paraphrase_report(cfg: InstructConfig, directory: str | Path | None = None, size: int | None = None) -> dict:
    """Accuracy and chain rate per instruction family (trained / held-out paraphrases of each mode,
    no instruction) on `size` problems of seed `test_seed + 1` per family, the family's
    instructions assigned round-robin; per instruction too. Writes `paraphrase_report.json/.md`.
    """
    out = Path(cfg.out)
    directory, model, tok = _saved_model(cfg, directory)
    meta = json.loads((directory / INSTRUCT_FILE).read_text())
    data = unseen_problems(cfg, size)
    questions, answers = list(data["question"]), list(data["answer"])
    report: dict = {"model_dir": str(directory), "heldout_seed": cfg.test_seed + 1, "n": len(data),
                    "families": {}, "instructions": []}
    md = [f"# Instruction paraphrases: {directory}", "",
          f"{len(data)} problems of seed {cfg.test_seed + 1} per family (never used in training), the family's "
          "instructions assigned round-robin, greedy.", "",
          "| family | trained reply | instructions | accuracy | with a chain |", "|---|---|---|---|---|"]
    for fam, (reply, texts) in paraphrase_families(meta).items():
        which = [i % len(texts) for i in range(len(questions))]
        prompts = [chat_prompt(tok, with_instruction(q, texts[w])) for q, w in zip(questions, which)]
        outs = generate_chat(model, tok, prompts, max_new_tokens=cfg.max_new_tokens)
        r = score_outputs(outs, answers, fam)
        report["families"][fam] = {"reply": reply, "n": r.n, "accuracy": r.accuracy, "chain_rate": r.chain_rate,
                                   "instructions": len(texts)}
        md.append(f"| {fam} | {reply} | {len(texts)} | {100 * r.accuracy:.1f}% | {100 * r.chain_rate:.1f}% |")
        for j, text in enumerate(texts):
            rows = [i for i, w in enumerate(which) if w == j]
            report["instructions"].append({"family": fam, "instruction": text, "n": len(rows),
                                           "accuracy": sum(r.correct[i] for i in rows) / max(1, len(rows)),
                                           "chain_rate": sum(r.chains[i] for i in rows) / max(1, len(rows))})
    md += ["", "Per instruction:", "", "| family | instruction | n | accuracy | with a chain |", "|---|---|---|---|---|"]
    md += [f"| {e['family']} | {e['instruction'] or '(none)'} | {e['n']} | {100 * e['accuracy']:.1f}% | "
           f"{100 * e['chain_rate']:.1f}% |" for e in report["instructions"]]
    (out / "paraphrase_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "paraphrase_report.md").write_text("\n".join(md) + "\n")
    return report


CARRY_CASES = (("direct", "<<"), ("none", "<<"), ("cot", "The"))
"""(prompt mode, first reply token given) of `carry_report`: a chain begun against the direct
instruction and without one, an answer begun against the CoT instruction."""


def carry_report(cfg: InstructConfig, directory: str | Path | None = None, size: int | None = None) -> dict:
    """Does a reply keep the mode its first token chose? For each `CARRY_CASES` entry, the reply's
    first token is given after the prompt and the model completes it greedily on `size` problems of
    seed `test_seed + 1`: accuracy, share with a chain and mean chain steps (against the CoT
    prompt's own). Writes `carry_report.json/.md` in `cfg.out`.
    """
    out = Path(cfg.out)
    directory, model, tok = _saved_model(cfg, directory)
    data = unseen_problems(cfg, size)
    instructions = load_instructions(directory)
    questions, answers = list(data["question"]), list(data["answer"])
    report: dict = {"model_dir": str(directory), "heldout_seed": cfg.test_seed + 1, "n": len(data), "cases": []}
    reference = generate_chat(model, tok, [instruct_prompt(tok, q, "cot", instructions) for q in questions],
                              max_new_tokens=cfg.max_new_tokens)
    ref_steps = sum(chain_steps(t) for t in reference) / max(1, len(reference))
    md = [f"# Carried modes: {directory}", "",
          f"{len(data)} problems of seed {cfg.test_seed + 1}; the reply's first token is given after the prompt, "
          f"the model completes it greedily. The CoT prompt's own chains have {ref_steps:.2f} steps.", "",
          "| prompt | reply begins with | accuracy | with a chain | mean chain steps |", "|---|---|---|---|---|"]
    for mode, first in CARRY_CASES:
        prompts = [instruct_prompt(tok, q, mode, instructions) + f" {first}" for q in questions]
        texts = [f"{first} {t}" for t in generate_chat(model, tok, prompts, max_new_tokens=cfg.max_new_tokens)]
        r = score_outputs(texts, answers, mode)
        steps = sum(chain_steps(t) for t in texts) / max(1, len(texts))
        report["cases"].append({"prompt": mode, "first_token": first, "accuracy": r.accuracy,
                                "chain_rate": r.chain_rate, "mean_steps": steps, "examples": texts[:3]})
        md.append(f"| {mode} | `{first}` | {100 * r.accuracy:.1f}% | {100 * r.chain_rate:.1f}% | {steps:.2f} |")
    report["reference_steps"] = ref_steps
    (out / "carry_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "carry_report.md").write_text("\n".join(md) + "\n")
    return report
