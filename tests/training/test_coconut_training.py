"""The tiny Coconut recipe: a few curriculum steps (every stage), the loss against an independent
computation, and the shipped model's accuracy where it is shipped."""

from __future__ import annotations

import pytest
import torch

from nnsight_codi.data.synthetic import make_train_test
from nnsight_codi.models.family import COCONUT_TOKENS
from nnsight_codi.training.coconut_curriculum import (
    CoconutTrainConfig,
    coconut_loss,
    coconut_tokenizer_and_model,
    encode,
    stage_latents,
    train_coconut,
)


def _setup():
    cfg = CoconutTrainConfig(n_layer=2, n_embd=32, n_head=2, stage_steps=(1, 1, 1, 1, 1), batch_size=4)
    model, tok, ids = coconut_tokenizer_and_model(cfg)
    ids = {**ids, **dict(zip(("start", "end", "latent"), tok.convert_tokens_to_ids(list(COCONUT_TOKENS))))}
    data = make_train_test(8, 4, train_seed=0, test_seed=5)["train"]
    return cfg, model, tok, ids, encode(tok, data)


def test_stage_schedule():
    cfg = CoconutTrainConfig()
    assert [stage_latents(cfg, s)[1] for s in range(5)] == [0, 2, 4, 6, 6]
    assert stage_latents(cfg, 4)[0] >= 100  # the last stage drops every language step
    with pytest.raises(ValueError, match="stage_steps needs 5 entries"):
        CoconutTrainConfig(stage_steps=(1, 2))


def test_new_tokens_start_from_the_double_angle_embedding():
    _, model, tok, _, _ = _setup()
    emb = model.get_input_embeddings().weight
    for token in COCONUT_TOKENS:
        assert torch.equal(emb[tok.convert_tokens_to_ids(token)], emb[tok.convert_tokens_to_ids("<<")])


@pytest.mark.parametrize("stage", [0, 2, 4])
def test_loss_equals_one_sequence_with_thoughts_fed_back(stage):
    """The cached, batched loss equals an independent per-example computation: the whole sequence run at
    once, each `<|latent|>` embedding replaced by the previous position's last hidden state, pass by pass."""
    cfg, model, tok, ids, examples = _setup()
    batch = examples[:3]
    with torch.no_grad():
        ours = coconut_loss(model, batch, stage, cfg, ids)
        skip, n = stage_latents(cfg, stage)
        losses, counts = [], []
        for e in batch:
            seq = e.question + [ids["start"]] + [ids["latent"]] * n + [ids["end"]] + \
                [t for s in e.steps[skip:] for t in s] + e.answer
            embeds = model.get_input_embeddings()(torch.tensor([seq]))
            first = len(e.question) + 1
            for k in range(n):  # each pass: rerun everything, fill latent k from position first+k-1
                hidden = model(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1]
                embeds = embeds.clone()
                embeds[0, first + k] = hidden[0, first + k - 1]
            logits = model(inputs_embeds=embeds).logits[0]
            start = first + n  # the end marker: predicts the first suffix token
            target = torch.tensor(seq[start + 1:])
            losses.append(torch.nn.functional.cross_entropy(logits[start:-1], target, reduction="sum"))
            counts.append(len(target))
        expected = sum(losses) / sum(counts)
    assert float(ours) == pytest.approx(float(expected), rel=1e-4)


def test_a_few_curriculum_steps_write_a_coconut_model(tmp_path):
    cfg = CoconutTrainConfig(out=str(tmp_path / "run"), train_size=64, eval_size=8, n_layer=2, n_embd=32, n_head=2,
                             stage_steps=(1, 1, 1, 1, 1), batch_size=4, eval_every=0)
    report = train_coconut(cfg, log=lambda *_: None)
    assert report["steps"] == 5 and all(torch.isfinite(torch.tensor(r["loss"])) for r in report["history"])
    from nnsight_codi.loading import load_model

    model = load_model(tmp_path / "run" / "model")
    assert model.latent_family == "coconut" and model.num_latents == 6
    assert len(model.answer(["Tom has 3 pens . He gets 4 more . How many pens does Tom have now ?"],
                            max_new_tokens=3)) == 1
    # a second phase starts from the saved tiny Coconut: every weight, its three token rows included
    phase2 = CoconutTrainConfig(n_layer=2, n_embd=32, n_head=2, seed=9, init_from=str(tmp_path / "run" / "model"))
    continued, tok, _ = coconut_tokenizer_and_model(phase2)
    saved = model._module.state_dict()
    for name, value in continued.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert tok.convert_tokens_to_ids(list(COCONUT_TOKENS)) == [model.codi_config.bot_id, model.codi_config.eot_id,
                                                                model.codi_config.latent_id]
    wrong = CoconutTrainConfig(n_layer=2, n_embd=64, n_head=2, init_from=str(tmp_path / "run" / "model"))
    with pytest.raises(ValueError, match="not a tiny GPT-2 of this shape"):
        coconut_tokenizer_and_model(wrong)
