"""The lm-eval model `nnsight-codi`: equal to the project's own evaluation (CODI and steered instruct LMs),
loglikelihood against a hand computation, and the `nnsight-codi lm-eval` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cot"))
import cot_testlib as lib  # noqa: E402
from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402

import nnsight_codi.harness  # noqa: E402  (registers the model)
from nnsight_codi.harness import NnsightCodiLM, task_manager  # noqa: E402
from nnsight_codi.harness.tasks import synthetic_dataset  # noqa: E402

FILE_KEY = {"nnsight_codi_synthetic": "synthetic_file", "nnsight_codi_gsm8k_local": "gsm8k_file"}


@pytest.fixture(scope="module")
def synthetic_lines(tmp_path_factory) -> Path:
    """The synthetic task's problems (the tiny models' recorded distribution) as a jsonl file."""
    path = tmp_path_factory.mktemp("syn") / "synthetic.jsonl"
    rows = synthetic_dataset(model="tiny")["test"]
    path.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))
    return path


def _gsm8k_lines(tmp_path: Path) -> Path:
    """The shipped GSM8K test lines, uncompressed into a jsonl file."""
    from nnsight_codi.data.gsm8k import read_shipped

    path = tmp_path / "gsm8k_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in read_shipped("test")))
    return path


def _head(src: Path, n: int, dst: Path) -> Path:
    dst.write_text("\n".join(src.read_text().splitlines()[:n]) + "\n")
    return dst


def _run(model_args, task, data, **kw):
    manager = task_manager({FILE_KEY[task]: str(data)}, include_defaults=False)
    return simple_evaluate(model="nnsight-codi", model_args=model_args, tasks=[task], log_samples=True,
                           bootstrap_iters=0, task_manager=manager, **kw)


def test_registered():
    assert get_model("nnsight-codi") is NnsightCodiLM


@pytest.mark.parametrize("task", ["nnsight_codi_synthetic", "nnsight_codi_gsm8k_local"])
def test_codi_accuracy_equals_nnsight_codi_eval(task, tmp_path, synthetic_lines):
    from nnsight_codi.data.eval_datasets import load_eval_dataset
    from nnsight_codi.evaluation import evaluate
    from nnsight_codi.loading import load_model

    src = synthetic_lines if task == "nnsight_codi_synthetic" else _gsm8k_lines(tmp_path)
    data = _head(src, 10, tmp_path / "data.jsonl")
    codi = load_model("tiny")
    ours = evaluate(codi, load_eval_dataset(str(data)), batch_size=4, max_new_tokens=24, progress=False)
    res = _run({"model": "tiny", "batch_size": 3, "max_gen_toks": 24, "loaded": codi, "progress": False}, task, data,
               gen_kwargs={"max_gen_toks": 24})
    assert res["results"][task]["acc,none"] == pytest.approx(ours.accuracy)
    samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
    assert [s["resps"][0][0] for s in samples] == [p.prediction_text for p in ours.predictions]
    if task == "nnsight_codi_synthetic":
        assert ours.accuracy > 0.5  # a real signal, not 0 == 0


def test_lora_interventions_through_the_adapter_equal_the_merged_model(tmp_path, synthetic_lines):
    """`lora_mode=interventions` (base + LoRA as interventions, remote="local") answers as the merged model."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from factories import make_reference_checkpoint

    ref = make_reference_checkpoint(tmp_path / "ckpt", "gpt2")
    data = _head(synthetic_lines, 5, tmp_path / "data.jsonl")
    common = {"model": str(ref["path"]), "base": str(ref["base_dir"]), "batch_size": 3, "max_gen_toks": 4,
              "progress": False}
    answers = {}
    for mode, extra in (("merged", {}), ("interventions", {"lora_mode": "interventions", "remote": "local"})):
        res = _run({**common, **extra}, "nnsight_codi_synthetic", data, gen_kwargs={"max_gen_toks": 4})
        answers[mode] = [s["resps"][0][0] for s in sorted(res["samples"]["nnsight_codi_synthetic"],
                                                           key=lambda s: s["doc_id"])]
    assert answers["interventions"] == answers["merged"] and len(answers["merged"]) == 5
    lm = NnsightCodiLM(**common, lora_mode="interventions")
    assert type(lm.model).__name__ == "LoraCodiModel"


def test_codi_loglikelihood_is_a_clear_error():
    from nnsight_codi.loading import load_model

    lm = NnsightCodiLM(loaded=load_model("tiny"), progress=False)
    req = Instance("loglikelihood", {}, ("Tom has 3 pens .", " 3"), 0)
    with pytest.raises(NotImplementedError, match="latent"):
        lm.loglikelihood([req])


@pytest.fixture(scope="module")
def steered(tmp_path_factory):
    from nnsight_codi.cot import ExtractConfig, extract_vectors

    model = lib.chat_lm()
    store = tmp_path_factory.mktemp("v") / "v.zarr"
    extract_vectors(store, ExtractConfig(model="t", limit=3, max_new_tokens=4, greedy=True), model=model,
                    progress=False)
    return model, store


def test_steered_instruct_lm_equals_own_evaluation(steered, tmp_path, synthetic_lines):
    from nnsight_codi.cot import evaluate_condition, load_vectors, parse_condition
    from nnsight_codi.data.eval_datasets import load_eval_dataset

    model, store = steered
    data = _head(synthetic_lines, 6, tmp_path / "syn.jsonl")
    cond = parse_condition("continuous:1:3")
    ours = evaluate_condition(model, load_eval_dataset(str(data)), cond, load_vectors(store), max_new_tokens=5,
                              batch_size=4, progress=False)
    args = {"model": "x", "loaded": model, "prompt_mode": "direct", "condition": "continuous:1:3",
            "vectors": str(store), "batch_size": 2, "progress": False}
    res = _run(args, "nnsight_codi_synthetic", data, gen_kwargs={"max_gen_toks": 5})
    samples = sorted(res["samples"]["nnsight_codi_synthetic"], key=lambda s: s["doc_id"])
    assert [s["resps"][0][0] for s in samples] == ours.texts
    assert res["results"]["nnsight_codi_synthetic"]["acc,none"] == pytest.approx(ours.accuracy)
    plain = _run({**args, "condition": "direct"}, "nnsight_codi_synthetic", data, gen_kwargs={"max_gen_toks": 5})
    assert [s["resps"][0][0] for s in sorted(plain["samples"]["nnsight_codi_synthetic"], key=lambda s: s["doc_id"])] \
        != ours.texts  # steering changed the outputs


def _hand_loglikelihood(lm, ctx, cont, delta=None, layer=1, context_only=False):
    seq = torch.tensor([ctx + cont])
    handle = None
    if delta is not None:
        def hook(module, args, output):
            mask = torch.zeros(seq.shape[1], 1)
            mask[: len(ctx) if context_only else seq.shape[1]] = 1
            return output + mask * delta
        handle = lm.transformer.h[layer - 1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logp = lm(seq).logits.log_softmax(-1)[0]
    finally:
        if handle is not None:
            handle.remove()
    rows = torch.arange(len(ctx) - 1, seq.shape[1] - 1)
    return float(logp[rows, torch.tensor(cont)].sum())


@pytest.mark.parametrize("condition", ["direct", "continuous:1:2", "single:1:2"])
def test_loglikelihood_equals_hand_computation(steered, condition):
    from nnsight_codi.cot import load_vectors

    model, store = steered
    lm = NnsightCodiLM(loaded=model, condition=condition, vectors=str(store), batch_size=2, progress=False)
    tok = model.tokenizer
    pairs = [("Tom has 3 pens .", " He gets 4 more ."), ("Anna has 12 apples . She", " loses 3"),
             ("Sam", " has 5 cards .")]
    got = lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)])
    v = torch.as_tensor(load_vectors(store))[1]
    for (ctx, cont), (lp, _) in zip(pairs, got):
        c_ids, x_ids = tok(ctx)["input_ids"], tok(cont)["input_ids"]
        delta = None if condition == "direct" else 2.0 * v
        want = _hand_loglikelihood(model._module, c_ids, x_ids, delta, context_only=condition.startswith("single"))
        assert lp == pytest.approx(want, abs=1e-4)


def _steps(rows) -> set[int]:
    return {r["answer"].count("<<") for r in rows}


def test_synthetic_task_follows_the_models_recorded_distribution(tmp_path):
    from nnsight_codi.data.eval_datasets import load_eval_dataset
    from nnsight_codi.harness.tasks import SYNTHETIC_SEED, SYNTHETIC_SIZE

    recorded = json.loads((Path(nnsight_codi.__file__).parent / "assets" / "tiny-instruct" / "instruct.json")
                          .read_text())["synthetic_options"]
    want = load_eval_dataset("synthetic", limit=SYNTHETIC_SIZE, seed=SYNTHETIC_SEED,
                             **{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})
    for spec in ("tiny", "tiny-instruct"):  # codi.json / instruct.json
        rows = synthetic_dataset(model=spec)["test"]
        assert list(rows["question"]) == list(want["question"])
        assert [a.split("####")[1].strip() for a in rows["answer"]] == list(want["answer"])
    # a model directory recording another distribution (an hf `pretrained=` dir works the same)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "instruct.json").write_text(json.dumps({"synthetic_options": {"min_steps": 4, "max_steps": 4}}))
    assert _steps(synthetic_dataset(pretrained=str(tmp_path / "m"))["test"]) == {4}
    # no record: the generator's default; metadata overrides either
    default = load_eval_dataset("synthetic", limit=SYNTHETIC_SIZE, seed=SYNTHETIC_SEED)
    assert list(synthetic_dataset(model="gpt2")["test"]["question"]) == list(default["question"])
    assert _steps(synthetic_dataset(model="tiny", min_steps=1, max_steps=1, synthetic_size=20)["test"]) == {1}
    assert _steps(synthetic_dataset(model="tiny")["test"]) == {2, 3}


def test_local_tasks_load_from_any_directory(tmp_path, monkeypatch, synthetic_lines):
    """The YAMLs name no path relative to the working directory (lm-eval's --include_path works anywhere)."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from nnsight_codi.harness.tasks import TASKS_DIR

    monkeypatch.chdir(tmp_path)
    for yaml in TASKS_DIR.glob("*.yaml"):
        assert "data_files" not in yaml.read_text()
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                          metadata={"model": "tiny", "gsm8k_file": str(synthetic_lines)})
    tasks = get_task_dict(["nnsight_codi_synthetic", "nnsight_codi_gsm8k_local"], manager)
    assert len(list(tasks["nnsight_codi_synthetic"].test_docs())) == 200
    assert len(list(tasks["nnsight_codi_gsm8k_local"].test_docs())) == 200
