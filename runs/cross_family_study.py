"""The same problems through each latent-reasoning family and the pause control.

For every model (default: the tiny CODI and the tiny Coconut; any `--models` spec of any family):
1. accuracy by K (0..the model's K), with its own latent input and under the **pause** control (a constant:
   the same K extra positions, nothing fed back; `Feedback.pause`);
2. where intermediate values sit: the logit lens of each step's final-normed last hidden state (the vector a
   Coconut feeds back; what CODI projects) — how often its top-1 token is an intermediate result of the
   problem's chain, or the final answer, by step;
3. how ablation moves each: latent k alone replaced by the pause input (`PatchLatent`), accuracy by k;
4. how steering moves each: at latent k+1, add the mean-difference vector mean(latent k) - mean(latent k+1) of
   the middle layer's residual stream (means over `reference_limit` other problems; `AddVector`, each of
   `steer_coefs`), against a random vector of the same norm (seeded), accuracy and answers changed by pair.

    python runs/cross_family_study.py --out results/cross_family [--limit 100] [--models tiny,tiny-coconut]

Writes results.json and report.md (`analyses/cross_family.py`, torch-free).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyses import cross_family  # noqa: E402
from nnsight_codi.data.scoring import extract_gold, extract_prediction, is_correct  # noqa: E402


@dataclass
class Config:
    """The cross-family study (defaults: both shipped tiny models, 100 held-out problems)."""

    models: tuple[str, ...] = ("tiny", "tiny-coconut")
    limit: int = 100
    seed: int = 1
    max_new_tokens: int = 12
    batch_size: int = 100
    reference_limit: int = 100
    reference_seed: int = 2
    steer_coefs: tuple[float, ...] = (1.0, 4.0, 16.0)


class TopToken:
    """Records the top-1 token of each step's last-position logits (steps 0..K: bot and the latents)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def sites(self, step: int) -> list[str]:
        return ["output"] if step <= self.k else []

    def visit(self, site: str, value: Any, step: int, sink: list) -> None:
        sink.append(("top", step, value.logits[:, -1].argmax(-1)))


def _numbers(tokenizer, ids) -> list[int | None]:
    out = []
    for i in ids:
        text = tokenizer.decode([int(i)]).strip()
        out.append(int(text) if text.isdigit() else None)
    return out


def study_model(spec: str, config: Config, progress: bool = True) -> dict[str, Any]:
    """Every measurement of one model (see the module doc)."""
    import torch

    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
    from nnsight_codi.data.synthetic import parse_cot
    from nnsight_codi.interventions.patching import PatchLatent
    from nnsight_codi.interventions.steering import AddVector
    from nnsight_codi.loading import load_codi_model
    from nnsight_codi.tracing.branches import Branch, run_branches
    from nnsight_codi.tracing.capture_hook import Capture
    from nnsight_codi.tracing.loop import run_loop

    model = load_codi_model(spec)
    data = load_eval_dataset("synthetic", limit=config.limit, seed=config.seed, **synthetic_options(model, {}))
    questions, golds = list(data["question"]), [extract_gold(a) for a in data["answer"]]
    chains = [[c for *_, c in parse_cot(cot)] for cot in data["cot"]]
    k_model = model.num_latents
    pause = model.pause_feedback()

    def score(tokens) -> list[bool]:
        return [is_correct(extract_prediction(t), g) for t, g in zip(model.decode(tokens), golds)]

    prompts = model.encode(questions)
    by_k: dict[str, dict[int, float]] = {"latent": {}, "pause": {}}
    for k in range(k_model + 1):
        for name, fb in (("latent", None), ("pause", pause)):
            # the model's own run at its K also records the logit lens by step (recording changes no token)
            hooks = [TopToken(k_model)] if (k, fb) == (k_model, None) else []
            tokens, records = run_loop(model, prompts, hooks, num_latents=k, max_new_tokens=config.max_new_tokens,
                                       feedback=fb)
            by_k[name][k] = sum(score(tokens)) / len(golds)
            if hooks:
                unsteered, lens_records = tokens, records
    # logit lens by step (the model's own run at its K)
    lens = {}
    for _, step, top in lens_records:
        values = _numbers(model.tokenizer, top.tolist())
        inter = [v is not None and v in chain[:-1] for v, chain in zip(values, chains)]
        final = [v is not None and v == g for v, g in zip(values, golds)]
        first = [v is not None and len(chain) > 1 and v == chain[0] for v, chain in zip(values, chains)]
        lens[model.step_names(k_model)[step]] = {"intermediate": sum(inter) / len(inter), "final": sum(final) / len(final),
                                                "first_result": sum(first) / len(first),
                                                "number": sum(v is not None for v in values) / len(values)}
    # ablation: latent k alone replaced by the pause input
    vector = pause.vector
    branches = [Branch([PatchLatent(k, torch.as_tensor(vector))]) for k in range(1, k_model + 1)]
    runs = run_branches(model, prompts, branches, num_latents=k_model, max_new_tokens=config.max_new_tokens)
    ablation = {f"latent{k}": sum(score(t)) / len(golds) for k, (t, _) in zip(range(1, k_model + 1), runs)}
    # steering: latent k+1 pushed toward latent k by the mean difference of the middle layer, vs a random vector
    layer = model.num_layers // 2
    reference = load_eval_dataset("synthetic", limit=config.reference_limit, seed=config.reference_seed,
                                  **synthetic_options(model, {}))
    _, records = run_loop(model, model.encode(list(reference["question"])), [Capture(["hidden"], [layer], k_model)],
                          num_latents=k_model, max_new_tokens=1)
    means = {step: hidden.float().mean(0) for _, step, hidden in records if 1 <= step <= k_model}
    generator = torch.Generator().manual_seed(config.seed)
    conditions, branches = [], []
    for k in range(1, k_model):
        vector = means[k] - means[k + 1]
        noise = torch.randn(vector.shape, generator=generator)
        noise = noise * vector.norm() / noise.norm()
        for coef in config.steer_coefs:
            for kind, v in (("mean_difference", vector), ("random", noise)):
                conditions.append((f"latent{k}-latent{k + 1}", coef, kind, float(vector.norm())))
                branches.append(Branch([AddVector(v, layer, [k + 1], coef)]))
    plain = model.decode(unsteered)
    runs = run_branches(model, prompts, branches, num_latents=k_model, max_new_tokens=config.max_new_tokens)
    steering = []
    for (pair, coef, kind, norm), (tokens, _) in zip(conditions, runs):
        texts = model.decode(tokens)
        steering.append({"pair": pair, "coef": coef, "vector": kind, "vector_norm": norm,
                         "accuracy": sum(score(tokens)) / len(golds),
                         "changed": sum(a != b for a, b in zip(texts, plain)) / len(golds)})
    return {"model": spec, "latent_family": model.latent_family, "num_latents": k_model, "n": len(golds),
            "accuracy_by_k": by_k, "lens": lens, "ablation": ablation,
            "steering": {"layer": layer, "conditions": steering}}


def run(config: Config, out, progress: bool = True) -> dict[str, Any]:
    """Run every model, write results.json and report.md; return the results (with a headline)."""
    from nnsight_codi.reporting import write_results

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
               "models": [study_model(spec, config, progress) for spec in config.models]}
    results["headline"] = cross_family.headline(results)
    write_results(out, cross_family_provenance(results))
    (out / "report.md").write_text(cross_family.report(results))
    return results


def cross_family_provenance(results: dict[str, Any]) -> dict[str, Any]:
    """`results` with the `provenance` block of a run over several models (each named by its shipped name)."""
    from nnsight_codi.reporting import model_provenance, provenance

    block = provenance(results["config"])
    models = [model_provenance(spec=spec) for spec in results["config"]["models"]]
    block["model"] = {"spec": ", ".join(str(m["spec"]) for m in models),
                      "shipped_name": ", ".join(str(m["shipped_name"] or m["spec"]) for m in models), "weights": None}
    return {**results, "provenance": block}


if __name__ == "__main__":
    from nnsight_codi.studies import study_main

    raise SystemExit(study_main(Config, run, "results/cross_family", __doc__))
