"""Captured attention (averaged, per block, per head) equals an independent computation: one plain
forward of the whole sequence `[prompt][bot][z1..zK][eot]` (no nnsight, no KV cache, no padding) with
eager attention, the weights read by forward hooks on each attention module and averaged by hand.
Source-token coordinates equal the tokenizer's strings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from factories import make_converted

from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.loading import load_model
from nnsight_codi.store import open_store

VARS = ("attention", "attention_layers", "attention_heads", "latent_input", "prompt_ids", "correct",
        "answer_pred", "answer_gold")


def attention_modules(lm):
    blocks = lm.transformer.h if hasattr(lm, "transformer") else lm.model.layers
    return [b.attn if hasattr(b, "attn") else b.self_attn for b in blocks]


@torch.no_grad()
def plain_forward_attention(lm, embeds: torch.Tensor) -> list[torch.Tensor]:
    """Per block `[head, query, key]` attention weights of one unbatched forward (eager), via hooks."""
    weights: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda mod, args, out: weights.append(out[1][0].detach().clone()))
               for m in attention_modules(lm)]
    previous = lm.config._attn_implementation
    lm.set_attn_implementation("eager")
    try:
        lm(inputs_embeds=embeds[None], output_attentions=True, use_cache=False)
    finally:
        lm.set_attn_implementation(previous)
        for h in handles:
            h.remove()
    return weights


def full_sequence(codi, ds, i: int) -> tuple[torch.Tensor, int]:
    """Input embeddings of example i's `[prompt][bot][z1..zK][eot]` and its prompt length P."""
    cfg = codi.codi_config
    n = int(ds["prompt_length"][i])
    ids = torch.tensor(ds["prompt_ids"][i, :n].values.astype(np.int64))
    embed = codi._module.get_input_embeddings()
    k = len(ds["step"]) - 2
    latents = torch.tensor(ds["latent_input"][i, 1 : k + 1].values)
    eot = embed(torch.tensor([cfg.eot_id] if cfg.remove_eos else [cfg.eot_id, cfg.eos_id]))
    return torch.cat([embed(ids), latents, eot]), n


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def captured(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    model_dir = make_converted(root, request.param, num_latents=2)
    codi = load_model(model_dir)
    config = CaptureConfig(model=str(model_dir), limit=5, variables=VARS, batch_size=3, max_new_tokens=3)
    run_capture(root / "s.zarr", config, codi=codi, progress=False)  # batches of 3 and 2: left padding
    return codi, open_store(root / "s.zarr")


def test_averaged_attention_equals_plain_forward_by_hand(captured):
    codi, ds = captured
    lm = codi._module
    assert ds.sizes["attention_head"] == lm.config.num_attention_heads  # query heads (GQA has fewer kv heads)
    for i in range(ds.sizes["example"]):
        embeds, n = full_sequence(codi, ds, i)
        weights = plain_forward_attention(lm, embeds)
        assert len(weights) == codi.num_layers
        for w in weights:  # rows sum to 1 before any averaging, and nothing looks ahead
            np.testing.assert_allclose(w.sum(-1).numpy(), 1.0, atol=1e-5)
            assert float(torch.triu(w, diagonal=1).abs().max()) == 0.0
        for s in range(ds.sizes["step"]):
            q = n - 1 + s                      # step s's query: bot, z1..zK, eot
            heads = np.stack([w[:, q, : q + 1].numpy() for w in weights])     # [block, head, key]
            per_block = np.stack([heads[b].sum(0) / heads.shape[1] for b in range(heads.shape[0])])
            average = per_block.sum(0) / per_block.shape[0]
            stored = ds["attention_heads"][i, s].values
            np.testing.assert_allclose(stored[..., : q + 1], heads, atol=2e-5)
            assert np.isnan(stored[..., q + 1 :]).all()
            np.testing.assert_allclose(ds["attention_layers"][i, s, :, : q + 1].values, per_block, atol=2e-5)
            np.testing.assert_allclose(ds["attention"][i, s, : q + 1].values, average, atol=2e-5)
            np.testing.assert_allclose(np.nansum(ds["attention"][i, s].values), 1.0, atol=1e-5)


def test_source_coordinates_name_every_position(captured):
    codi, ds = captured
    tok = codi.tokenizer
    k = len(ds["step"]) - 2
    for i in range(ds.sizes["example"]):
        n = int(ds["prompt_length"][i])
        ids = ds["prompt_ids"][i, :n].values.tolist()
        tokens = [str(t) for t in ds["source_token"][i].values]
        kinds = [str(t) for t in ds["source_kind"][i].values]
        assert tokens[:n] == [tok.decode([t]) for t in ids]
        assert kinds[n - 1] == "bot" and kinds[n : n + k] == [f"latent{j}" for j in range(1, k + 1)]
        assert kinds[n + k] == "eot"
        for t, kind in zip(tokens[: n - 1], kinds[: n - 1]):
            assert kind == ("number" if t.strip().isdigit() else "prompt"), (t, kind)
        width = n + k + 1
        assert set(kinds[width:]) <= {""} and set(tokens[width:]) <= {""}
        # the attention row of each step covers exactly the positions the coordinates name
        assert np.isfinite(ds["attention"][i, -1, :width].values).all()


@torch.no_grad()
def test_shipped_tiny_heads_equal_softmax_qk_by_hand(tmp_path):
    """On the shipped (GPT-2) tiny CODI, per-head weights also equal softmax(q·k/√d) computed from each
    block's attention input with its c_attn weights (no transformers attention code at all)."""
    codi = load_model("tiny")
    config = CaptureConfig(model="tiny", limit=2, variables=VARS, batch_size=2, max_new_tokens=8)
    run_capture(tmp_path / "t.zarr", config, codi=codi, progress=False)
    ds = open_store(tmp_path / "t.zarr")
    lm = codi._module
    inputs: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda mod, args, kw: inputs.append(
        (args[0] if args else kw["hidden_states"])[0].clone()), with_kwargs=True) for m in attention_modules(lm)]
    heads, dim = lm.config.n_head, lm.config.n_embd // lm.config.n_head
    try:
        for i in range(2):
            inputs.clear()
            embeds, n = full_sequence(codi, ds, i)
            lm(inputs_embeds=embeds[None], use_cache=False)
            for b, x in enumerate(inputs):
                attn = attention_modules(lm)[b]
                q, k, _ = (x @ attn.c_attn.weight + attn.c_attn.bias).split(lm.config.n_embd, dim=-1)
                q = q.view(-1, heads, dim).transpose(0, 1)
                k = k.view(-1, heads, dim).transpose(0, 1)
                scores = q @ k.transpose(-1, -2) / math.sqrt(dim)
                scores = scores.masked_fill(torch.triu(torch.ones_like(scores, dtype=torch.bool), 1), float("-inf"))
                w = scores.softmax(-1)
                for s in range(ds.sizes["step"]):
                    row = n - 1 + s
                    np.testing.assert_allclose(ds["attention_heads"][i, s, b, :, : row + 1].values,
                                               w[:, row, : row + 1].numpy(), atol=2e-5)
    finally:
        for h in handles:
            h.remove()
