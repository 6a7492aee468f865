"""The shipped tiny CODI (`--model tiny`): loads offline, the nnsight loop agrees with the
plain-torch training evaluator, and it really reasons in its latents on held-out problems."""

from __future__ import annotations

import pytest

from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
from nnsight_codi.data.scoring import extract_gold, extract_prediction, is_correct
from nnsight_codi.evaluation import direct_answer_budget
from nnsight_codi.loading import load_model
from nnsight_codi.models.model_sources import TINY_MODEL_DIR
from nnsight_codi.training.report import load_trained
from nnsight_codi.training.train_evaluator import student_generate

HELD_OUT_SEED = 1_000_004  # never used to train the shipped model (codi.json: train_seed 3, test_seed 1000003)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def problems(tiny):
    return load_eval_dataset("synthetic", limit=64, seed=HELD_OUT_SEED, **synthetic_options(tiny))


def accuracy(texts, answers):
    return sum(is_correct(extract_prediction(t), extract_gold(a)) for t, a in zip(texts, answers)) / len(answers)


def test_config_and_tokenizer(tiny):
    cfg = tiny.codi_config
    assert cfg.num_latents == 6 and cfg.extra["train_seed"] != HELD_OUT_SEED != cfg.extra["test_seed"]
    assert (cfg.pad_id, cfg.bot_id, cfg.eot_id) == (len(tiny.tokenizer) - 3, len(tiny.tokenizer) - 2,
                                                     len(tiny.tokenizer) - 1)
    for n in (0, 7, 42, 99, 999):  # every number in range is one token
        assert len(tiny.tokenizer(str(n), add_special_tokens=False)["input_ids"]) == 1
    assert direct_answer_budget(tiny) == len("The answer is : 0".split()) + 3


def test_nnsight_loop_equals_plain_torch_evaluator(tiny, problems):
    questions = list(problems["question"])[:16]
    model, prj, tok, cfg = load_trained(TINY_MODEL_DIR)
    ids = {"pad_id": cfg.pad_id, "bot_id": cfg.bot_id, "eot_id": cfg.eot_id, "eos_id": cfg.eos_id}
    for k in (0, 6):
        reference, _ = student_generate(model, prj, tok, questions, num_latents=k, max_new_tokens=12, **ids)
        assert tiny.answer(questions, num_latents=k, max_new_tokens=12) == reference


def test_reasons_in_its_latents(tiny, problems):
    questions, answers = list(problems["question"]), list(problems["answer"])
    with_latents = accuracy(tiny.answer(questions), answers)
    direct_k0 = accuracy(tiny.answer(questions, num_latents=0, max_new_tokens=direct_answer_budget(tiny)), answers)
    assert with_latents >= 0.9  # 98.3% on 1,000 problems of this seed (TRAINING.md)
    assert with_latents - direct_k0 >= 0.5  # 13.3% without latents on the same 1,000
