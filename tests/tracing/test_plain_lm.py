"""`PlainLM`: a plain LM's facts equal its config (read independently here), and `encode` left-pads a batch
exactly as each text alone, without touching the caller's tokenizer."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_lm, word_tokenizer
from nnsight import TransformersModel

from nnsight_codi.models.architecture import transformer_blocks
from nnsight_codi.tracing.plain_lm import PlainLM

TEXTS = ["tom has 3 pens .", "how many ?", "tom has 12 pens . he gets 4 more . how many pens ?", "pens"]


@pytest.fixture(scope="module")
def tiny_instruct():
    from nnsight_codi.loading import load_instruct_model

    return load_instruct_model("tiny-instruct")


def _built(family: str) -> TransformersModel:
    """A GPT-2- or Llama-shaped LM (3 blocks, width 32) over a tokenizer with no pad token (nnsight gives it
    one: taken away again); the generation config stops at eos (0), id 5 and an id beyond the vocabulary."""
    lm = tiny_lm(family, layers=3, dim=32)
    lm.generation_config.eos_token_id = [0, 5, 10_000]
    model = TransformersModel(lm, tokenizer=word_tokenizer())
    model.tokenizer.pad_token = None
    return model


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_facts_of_a_built_model(family):
    model = _built(family)
    hf = model._module
    plain = PlainLM.of(model)
    assert plain.num_layers == hf.config.num_hidden_layers == len(transformer_blocks(hf)) == 3
    assert plain.hidden_size == hf.config.hidden_size == hf.get_input_embeddings().weight.shape[1] == 32
    assert plain.vocab_size == hf.config.vocab_size == hf.get_output_embeddings().weight.shape[0]
    assert model.tokenizer.pad_token_id is None and plain.pad_id == model.tokenizer.eos_token_id == 0
    assert plain.stop_ids == {0, 5}  # 10_000 is no token of this vocabulary
    assert plain.device == torch.device("cpu")
    assert plain.model_id == type(hf).__name__  # built in memory: no name_or_path


def test_facts_of_the_shipped_tiny_instruct_model(tiny_instruct):
    hf = tiny_instruct._module
    plain = PlainLM.of(tiny_instruct)
    assert (plain.num_layers, plain.hidden_size, plain.vocab_size) == (
        hf.config.n_layer, hf.config.n_embd, hf.get_output_embeddings().weight.shape[0])
    assert len(transformer_blocks(hf)) == plain.num_layers
    assert plain.pad_id == hf.config.pad_token_id == tiny_instruct.tokenizer.pad_token_id
    assert plain.stop_ids == {hf.generation_config.eos_token_id}
    assert plain.device == next(hf.parameters()).device
    assert plain.model_id.rstrip("/").endswith("tiny-instruct")


def test_a_remote_models_inputs_go_to_the_cpu():
    """A remote model's local copy has its weights on `meta` (a stand-in with the two attributes read here)."""
    from types import SimpleNamespace

    meta = SimpleNamespace(_module=tiny_lm("gpt2").to("meta"), tokenizer=word_tokenizer())
    assert next(meta._module.parameters()).device.type == "meta"
    assert PlainLM.of(meta).device == torch.device("cpu")  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("side", ["right", "left"])
def test_encode_leaves_the_tokenizer_alone_and_a_batch_equals_one_at_a_time(tiny_instruct, side):
    tok = tiny_instruct.tokenizer
    before = tok.padding_side
    try:
        tok.padding_side = side
        plain = PlainLM.of(tiny_instruct)
        batch = plain.encode(TEXTS)
        assert tok.padding_side == side
        # an independent encoding: the tokenizer's own left padding, asked for per call
        hf = tok(TEXTS, padding=True, padding_side="left", return_tensors="pt")
        assert torch.equal(batch.input_ids, hf["input_ids"]) and torch.equal(batch.attention_mask, hf["attention_mask"])
        for row, text in enumerate(TEXTS):
            alone = plain.encode([text])
            n = alone.input_ids.shape[1]
            assert n == len(tok(text)["input_ids"])
            assert torch.equal(batch.input_ids[row, -n:], alone.input_ids[0])  # the text, right-aligned
            assert batch.attention_mask[row].tolist() == [0] * (batch.input_ids.shape[1] - n) + [1] * n
            assert (batch.input_ids[row, :-n] == plain.pad_id).all()
    finally:
        tok.padding_side = before


def test_encode_pads_with_eos_when_the_tokenizer_has_no_pad_token():
    model = _built("llama")
    tok = model.tokenizer
    tok.padding_side = "right"
    batch = PlainLM.of(model).encode(["tom has 3 pens", "pens"])
    assert batch.input_ids.tolist() == [tok("tom has 3 pens")["input_ids"], [0, 0, 0, tok("pens")["input_ids"][0]]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [0, 0, 0, 1]]
    assert tok.padding_side == "right" and tok.pad_token_id is None
