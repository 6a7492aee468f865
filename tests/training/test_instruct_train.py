"""Instruct training: chat-formatted examples with CE on the assistant turn only; a few steps run,
lower the loss and are deterministic."""

import json

import pytest
import torch

from nnsight_codi.data.synthetic import make_train_test
from nnsight_codi.instruct import contains_chain, instruct_prompt
from nnsight_codi.training.encode import collate
from nnsight_codi.training.instruct_training import (
    InstructConfig,
    build_instruct_setup,
    encode_instruct_dataset,
    train_instruct,
)

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


def test_warm_start_with_paraphrases_keeps_old_ids_and_trains_none_as_direct(data, tmp_path):
    """A continued run: the source's weights and token ids are kept, the paraphrases' new words get
    new ids at the end, a problem without instruction is trained to answer directly, and the
    held-out paraphrases are recorded but never trained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = InstructConfig(**{**SMALL, "out": str(tmp_path / "src")})
    train_instruct(src, data=data)
    src_dir = tmp_path / "src" / "model"
    old_tok = AutoTokenizer.from_pretrained(str(src_dir))
    old_emb = AutoModelForCausalLM.from_pretrained(str(src_dir)).get_input_embeddings().weight.detach()
    cot = ["Answer the question thinking step by step.", "Show your work ."]
    direct = ["Answer the question immediately, without any elaboration.", "Just give the number ."]
    cfg = InstructConfig(**{**SMALL, "out": str(tmp_path / "warm"), "init_from": str(src_dir),
                            "cot_instructions": cot, "direct_instructions": direct,
                            "heldout_cot_instructions": ["Show the work step by step ."],
                            "heldout_direct_instructions": ["Give the number only ."],
                            "direct_fraction": 0.3, "none_fraction": 0.3, "none_reply": "direct", "steps": 3})
    setup = build_instruct_setup(cfg)
    tok = setup.tokenizer
    old_vocab = old_tok.get_vocab()
    assert all(tok.convert_tokens_to_ids(w) == i for w, i in old_vocab.items())  # every old id kept
    new = sorted(set(tok.get_vocab()) - set(old_vocab))
    assert {"Show", "your", "work", "Just", "give"} <= set(new) and "only" not in new  # "only": a problem word
    assert min(tok.convert_tokens_to_ids(new)) == len(old_vocab)  # appended after every old id
    emb = setup.model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(old_vocab) + len(new) and torch.equal(emb[: len(old_vocab)], old_emb)
    for text in cot + direct + cfg.heldout_cot_instructions + cfg.heldout_direct_instructions:
        assert tok.unk_token_id not in tok(text, add_special_tokens=False)["input_ids"]
    examples, modes = encode_instruct_dataset(tok, data[0], cfg)
    assert {"cot", "direct", "none"} <= set(modes)
    held = set(cfg.heldout_cot_instructions + cfg.heldout_direct_instructions)
    for e, m in zip(examples, modes):
        reply = tok.decode(e.answer, skip_special_tokens=True)
        assert contains_chain(reply) == (m == "cot")  # none → the direct reply
        prompt = tok.decode(e.question, skip_special_tokens=True)
        assert not any(h.replace(" .", "") in prompt for h in held)
    train_instruct(cfg, data=data)
    meta = json.loads((tmp_path / "warm" / "model" / "instruct.json").read_text())
    assert meta["heldout_instructions"] == {"cot": cfg.heldout_cot_instructions,
                                            "direct": cfg.heldout_direct_instructions}
    assert meta["none_reply"] == "direct" and meta["instructions"]["cot"] == cot
    with pytest.raises(ValueError, match="held-out instructions are also trained"):
        InstructConfig(**{**SMALL, "heldout_cot_instructions": [cot[0]]})


def test_carried_problems_train_the_reply_to_keep_the_mode_its_first_token_chose(data):
    """`carry_fraction`: those problems get the other mode's reply with its first token in the
    unlabelled prompt; the instruction (and mode per problem) is unchanged; the rest are as before."""
    from nnsight_codi.training.instruct_training import carry_flags

    base = InstructConfig(**SMALL)
    cfg = InstructConfig(**{**SMALL, "carry_fraction": 0.4})
    setup = build_instruct_setup(cfg)
    tok = setup.tokenizer
    plain, modes = encode_instruct_dataset(tok, data[0], base)
    carried_examples, carried_modes = encode_instruct_dataset(tok, data[0], cfg)
    flags = carry_flags(len(data[0]), cfg)
    assert carried_modes == modes  # the instruction of every problem is the same
    assert 0.25 < sum(flags) / len(flags) < 0.55
    b = collate(carried_examples[:16], **setup.ids)
    for i, (e, p, k) in enumerate(zip(carried_examples, plain, flags)):
        if not k:
            assert (e.question, e.answer) == (p.question, p.answer)
            continue
        prompt_len = len(p.question)
        assert e.question[:prompt_len] == p.question  # same instruction
        first = tok.convert_ids_to_tokens(e.question[prompt_len:])
        reply = tok.decode(e.question[prompt_len:] + e.answer, skip_special_tokens=True)
        # the other mode's reply: a chain where the instruction asks for the answer, and vice versa
        assert contains_chain(reply) == (modes[i] == "direct")
        assert first == (["<<"] if modes[i] == "direct" else ["The"])
        if i < 16:  # the first reply token is context, not a label
            labelled = b.teacher_labels[i][b.teacher_labels[i] != -100].tolist()
            assert labelled == e.answer
    with pytest.raises(ValueError, match="carry_fraction"):
        InstructConfig(**{**SMALL, "carry_fraction": 1.5})
