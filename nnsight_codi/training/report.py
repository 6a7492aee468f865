"""Final held-out report of a trained run, computed from the saved converted directory.

Reloads `OUT/model` (so the shipped files are what is measured), regenerates the held-out
problems (synthetic: from `test_seed`, never used in training, plus a second unseen seed),
and measures: accuracy with K latents, a sweep over the number of latents (0..K+2), the
teacher's free-running explicit-CoT accuracy, and the logit-lens table. Writes
`OUT/report.json` and `OUT/report.md`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..models.config import CodiConfig
from ..models.converted import load_projection
from .config import TrainConfig
from .evaluate import evaluate_student, evaluate_teacher, lens_table, lens_top_tokens


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
    from .trainer import load_data

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
