"""CODI training: hand-checked distillation loss, batch layout, losses fall, resume, LoRA, CLI.

Everything runs on a 2-layer, 32-dim word-level GPT-2 and a few hundred synthetic problems.
"""

import argparse
import json
import math

import pytest
import torch

from nnsight_codi.data.rows import encode_example, prepare_cot
from nnsight_codi.data.synthetic import make_train_test
from nnsight_codi.models.codi_config import CodiConfig
from nnsight_codi.training.codi import codi_losses, distillation_loss, run_latents
from nnsight_codi.training.encode import collate
from nnsight_codi.training.train_config import TrainConfig
from nnsight_codi.training.trainer import build_setup, encode_dataset, train

SMALL = dict(n_layer=2, n_embd=32, n_head=2, max_number=99, num_latents=2, batch_size=16, lr=3e-3,
             min_steps=2, max_steps=2, value_max=30, add_max=5, mul_max=3, progress=False, threads=0,
             eval_every=0, checkpoint_every=0, log_every=5, eval_size=32, eval_during=16, train_size=400)


@pytest.fixture(scope="module")
def data():
    s = make_train_test(400, 32, train_seed=11, test_seed=12, min_steps=2, max_steps=2, value_range=(0, 30),
                        add_range=(1, 5), mul_range=(2, 3))
    return s["train"], s["test"]


def test_distillation_loss_by_hand():
    torch.manual_seed(0)
    student = [torch.randn(3, 4) * 2, torch.randn(3, 4)]
    teacher = [torch.randn(3, 4) * 3, torch.randn(3, 4) * 0.5]
    per_layer = []
    for s, t in zip(student, teacher):
        s_l, t_l = s.flatten().tolist(), t.flatten().tolist()
        elems = []
        for a, b in zip(s_l, t_l):
            d = abs(a - b)
            elems.append(0.5 * d * d if d < 1 else d - 0.5)
        mean_t = sum(t_l) / len(t_l)
        std = math.sqrt(sum((x - mean_t) ** 2 for x in t_l) / (len(t_l) - 1))
        per_layer.append(sum(elems) / len(elems) / std)
    expected = sum(per_layer) / len(per_layer)
    got = distillation_loss(student, teacher, "smooth_l1", div_std=True)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # the teacher is a detached target: no gradient reaches it
    t = [x.clone().requires_grad_(True) for x in teacher]
    s = [x.clone().requires_grad_(True) for x in student]
    distillation_loss(s, t).backward()
    assert all(x.grad is None for x in t) and all(x.grad is not None for x in s)
    l2 = distillation_loss(student, teacher, "l2")
    exp_l2 = sum(((a - b) ** 2).mean() / b.std() ** 2 for a, b in zip(student, teacher)) / 2
    assert l2.item() == pytest.approx(exp_l2.item(), rel=1e-5)


def test_batch_layout(data):
    cfg = TrainConfig(**SMALL)
    setup = build_setup(cfg)
    tok, ids = setup.tokenizer, setup.ids
    colon = tok.convert_tokens_to_ids(":")
    rows = [data[0][i] for i in range(4)]
    enc = [encode_example(tok, r["question"], r["cot"], r["answer"], template=cfg.answer_template) for r in rows]
    b = collate(enc, **ids)
    for i, r in enumerate(rows):
        number = tok.convert_tokens_to_ids(r["answer"])
        assert b.teacher_ids[i, b.teacher_distill[i]] == colon
        assert b.teacher_ids[i, b.teacher_distill[i] + 1] == number
        assert b.decoder_ids[i, 0] == ids["eot_id"]
        assert b.decoder_ids[i, b.student_distill[i]] == colon
        assert b.decoder_ids[i, b.student_distill[i] + 1] == number
        assert b.prompt_ids[i, -1] == ids["bot_id"]
        # question tokens carry no teacher label; the CoT's first token does
        assert (b.teacher_labels[i, : b.question_width] == -100).all()
        assert b.teacher_labels[i, b.question_width] == tok.convert_tokens_to_ids("<<")
    assert prepare_cot("<< 1 + 2 = 3 >> << 3 * 2 = 6 >>", include_last=False) == "<< 1 + 2 = 3 >>"
    assert prepare_cot("<<1+2=3>> <<3*2=6>>", include_last=False) == "<<1+2=3>>"


def test_shared_prompt_equals_separate_and_batching(data):
    cfg = TrainConfig(**SMALL)
    setup = build_setup(cfg)
    ex = encode_dataset(setup.tokenizer, data[0].select(range(8)), cfg)
    b = collate(ex, **setup.ids)
    out = {}
    for shared in (True, False):
        setup.model.zero_grad(); setup.prj.zero_grad()
        losses = codi_losses(setup.model, setup.prj, b, num_latents=2, pad_id=setup.ids["pad_id"],
                             shared_prompt=shared)
        losses["loss"].backward()
        grads = torch.cat([p.grad.flatten() for p in [*setup.model.parameters(), *setup.prj.parameters()]])
        out[shared] = (losses["loss"].item(), grads)
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-5)
    assert torch.allclose(out[True][1], out[False][1], atol=1e-5)
    # left-padded batched latents equal one-at-a-time latents
    with torch.no_grad():
        full = run_latents(setup.model, setup.prj, b.prompt_ids, b.prompt_mask, 2).z
        for i in range(3):
            m = b.prompt_mask[i].bool()
            one = run_latents(setup.model, setup.prj, b.prompt_ids[i:i + 1, m], b.prompt_mask[i:i + 1, m], 2).z
            assert torch.allclose(full[i], one[0], atol=1e-5)


def test_losses_fall_and_saved_format(tmp_path, data):
    cfg = TrainConfig(out=str(tmp_path / "run"), steps=60, teacher_warmup_steps=10, **SMALL)
    metrics = train(cfg, data=data)
    hist = metrics["history"]
    assert hist[0]["teacher"] > 1.5 * hist[-1]["teacher"]
    joint = [h for h in hist if h["step"] > 10]
    assert joint[0]["student"] > 1.2 * joint[-1]["student"]
    assert all(h["distill"] > 0 for h in joint)
    model_dir = tmp_path / "run" / "model"
    ccfg = CodiConfig.load(model_dir)
    assert ccfg.num_latents == 2 and ccfg.bot_id == ccfg.pad_id + 1 and ccfg.eot_id == ccfg.pad_id + 2
    assert (model_dir / "prj.safetensors").is_file() and (model_dir / "tokenizer.json").is_file()
    from nnsight_codi.training.report import load_trained

    model, prj, tok, _ = load_trained(model_dir)
    assert len(tok) == model.get_input_embeddings().weight.shape[0]


def test_resume_continues_exactly(tmp_path, data):
    common = dict(steps=12, checkpoint_every=3, **{k: v for k, v in SMALL.items() if k != "checkpoint_every"})
    full = TrainConfig(out=str(tmp_path / "full"), **common)
    train(full, data=data)
    part = TrainConfig(out=str(tmp_path / "part"), **common)
    train(part, data=data, stop_at=6)
    state = torch.load(tmp_path / "part" / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 6
    metrics = train(part, resume=True, data=data)
    assert metrics["steps"] == 12
    a = torch.load(tmp_path / "full" / "checkpoint" / "state.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "part" / "checkpoint" / "state.pt", weights_only=False)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 12
    with pytest.raises(ValueError, match="differs"):
        train(TrainConfig(out=str(tmp_path / "part"), **{**common, "lr": 1e-4}), resume=True, data=data)


def test_lora_merge_matches():
    from nnsight_codi.training.lora_layers import LoraLinear, apply_lora, merge_lora

    cfg = TrainConfig(**SMALL)
    setup = build_setup(cfg)
    model = setup.model
    x = torch.tensor([[5, 6, 7, 8]])
    before = model(x).logits
    n = apply_lora(model, r=4, alpha=8)
    assert n == 3 * cfg.n_layer + cfg.n_layer  # c_attn, attn c_proj, c_fc, mlp c_proj per layer
    assert torch.allclose(model(x).logits, before, atol=1e-6)  # B = 0 at init
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.ndim == 2 for p in trainable)
    for m in model.modules():
        if isinstance(m, LoraLinear):
            torch.nn.init.normal_(m.lora_b, std=0.1)
    with torch.no_grad():
        wrapped = model(x).logits
        merged = merge_lora(model)(x).logits
    assert not any(isinstance(m, LoraLinear) for m in model.modules())
    assert torch.allclose(wrapped, merged, atol=1e-4)


def test_cli_register_and_config():
    from nnsight_codi.commands import train as cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd.register(sub)
    args = parser.parse_args(["train", "--out", "x", "--steps", "5", "--num-latents", "3", "--distill-weight", "2",
                              "--no-include-last-cot", "--dataset", "synthetic"])
    assert args.func is cmd.run
    cfg = cmd.config_from_args(args)
    assert (cfg.out, cfg.steps, cfg.num_latents, cfg.distill_weight, cfg.include_last_cot) == ("x", 5, 3, 2.0, False)
    bad = parser.parse_args(["train", "--out", "x", "--seed", "3", "--test-seed", "3"])
    assert cmd.run(bad) == 2
    with pytest.raises(ValueError):
        TrainConfig(answer_template="no placeholder")


def test_config_file_is_type_checked_and_round_trips(tmp_path):
    cfg = TrainConfig(steps=7, prj_dim=32, extra={"note": "x"})
    cfg.save(tmp_path / "ok.json")
    assert TrainConfig.load(tmp_path / "ok.json") == cfg
    for data, message in [({"steps": "x"}, "steps must be int | None, got 'x' (str)"),
                          ({"lr": True}, "lr must be float, got True (bool)"),
                          ({"stpes": 3}, "unknown key(s) ['stpes']"),
                          ([1, 2], "expected a mapping")]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ValueError) as err:
            TrainConfig.load(path)
        assert message in str(err.value) and str(err.value).startswith("train config")


def test_hf_base_from_local_files(tmp_path, family="llama", lora_r=4):
    """A local HF base (Llama, LoRA on its Linear layers) trained on GSM8k-Aug style jsonl."""
    from factories import BASE_VOCAB, tiny_lm, word_tokenizer

    lm = tiny_lm(family)
    base = lm.__class__(lm.config.__class__(**{**lm.config.to_dict(), "vocab_size": BASE_VOCAB}))
    base.save_pretrained(tmp_path / "base")
    word_tokenizer().save_pretrained(tmp_path / "base")
    rows = []
    for a in range(1, 9):
        for b in range(1, 5):
            rows.append({"question": f"tom has {a} pens . he gets {b} more . how many pens ?",
                         "cot": f"<<{a}+{b}={a + b}>>", "answer": f"#### {a + b}"})
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = TrainConfig(out=str(tmp_path / "run"), base=str(tmp_path / "base"), dataset=str(tmp_path / "train.jsonl"),
                      answer_template="the answer is : {answer}", eval_size=4, eval_during=4, steps=4, batch_size=4,
                      num_latents=2, lora_r=lora_r, progress=False, eval_every=0, checkpoint_every=0, log_every=1)
    metrics = train(cfg)
    assert metrics["steps"] == 4 and all(math.isfinite(h["loss"]) for h in metrics["history"])
    ccfg = CodiConfig.load(tmp_path / "run" / "model")
    assert (ccfg.pad_id, ccfg.bot_id, ccfg.eot_id) == (BASE_VOCAB, BASE_VOCAB + 1, BASE_VOCAB + 2)
    assert ccfg.family == family
    from nnsight_codi.training.report import load_trained

    model, _, tok, _ = load_trained(tmp_path / "run" / "model")
    assert not any("lora" in k for k in model.state_dict())
    assert len(tok) == BASE_VOCAB + 3
