"""Instruct training: chat-formatted examples with CE on the assistant turn only; a few steps run,
lower the loss and are deterministic."""

import json

import pytest
import torch

from nnsight_codi.data.synthetic import make_train_test
from nnsight_codi.instruct import contains_chain, instruct_prompt
from nnsight_codi.training.encode import collate
from nnsight_codi.training.instruct import (InstructConfig, build_instruct_setup, encode_instruct_dataset,
                                            train_instruct)

SMALL = dict(n_layer=2, n_embd=32, n_head=2, max_number=99, batch_size=16, lr=3e-3, min_steps=2, max_steps=2,
             value_max=30, add_max=5, mul_max=3, progress=False, threads=0, eval_every=0, checkpoint_every=0,
             log_every=2, eval_size=16, eval_during=8, train_size=200, steps=6, direct_fraction=0.5, seed=5,
             test_seed=6, max_new_tokens=12)


@pytest.fixture(scope="module")
def data():
    s = make_train_test(200, 16, train_seed=5, test_seed=6, min_steps=2, max_steps=2, value_range=(0, 30),
                        add_range=(1, 5), mul_range=(2, 3))
    return s["train"], s["test"]


def test_examples_are_chat_turns_with_loss_on_the_assistant_only(data):
    cfg = InstructConfig(**SMALL)
    setup = build_instruct_setup(cfg)
    tok = setup.tokenizer
    examples, modes = encode_instruct_dataset(tok, data[0], cfg)
    assert set(modes) == {"cot", "direct"}
    for i in range(8):
        row = data[0][i]
        prompt = tok.convert_ids_to_tokens(examples[i].question)
        reply = tok.decode(examples[i].answer, skip_special_tokens=True)
        assert prompt[0] == "<|user|>" and prompt[-2:] == ["<eos>", "<|assistant|>"]
        assert examples[i].answer[-1] == tok.eos_token_id
        assert examples[i].question == tok(instruct_prompt(tok, row["question"], modes[i]),
                                           add_special_tokens=False)["input_ids"]
        assert reply.endswith(f"The answer is : {row['answer']}")
        assert contains_chain(reply) == (modes[i] == "cot")
    b = collate(examples[:4], **setup.ids)
    for i, e in enumerate(examples[:4]):
        labelled = b.teacher_labels[i][b.teacher_labels[i] != -100].tolist()
        assert labelled == e.answer  # CE exactly on the assistant turn (+ eos), nothing else


def test_a_few_steps_run_lower_the_loss_and_are_deterministic(data, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = InstructConfig(**{**SMALL, "out": str(tmp_path / name)})
        m = train_instruct(cfg, data=data)
        runs.append((m, cfg))
    (m1, c1), (m2, _) = runs
    losses = [h["loss"] for h in m1["history"]]
    assert losses == [h["loss"] for h in m2["history"]]  # bit-identical
    assert losses[-1] < losses[0]
    from safetensors.torch import load_file

    w1 = load_file(tmp_path / "a" / "model" / "model.safetensors")
    w2 = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    meta = json.loads((tmp_path / "a" / "model" / "instruct.json").read_text())
    assert meta["instructions"]["cot"][0] == c1.cot_instructions[0]
