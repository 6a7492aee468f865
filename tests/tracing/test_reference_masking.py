"""`masking="reference"` reproduces the reference as published (transformers 4.52 on CUDA).

The oracle is a hand-written GPT-2 forward (plain tensor ops on the model's weights, its own KV
cache) that implements the rule directly: in the prompt call a query row with no unmasked key
(a left pad's own row) attends to every key by score; latent and answer calls get no mask; positions
count the padding. It shares no code with the package's mask builder.
"""

from __future__ import annotations

import math

import pytest
import torch
from factories import make_converted

from nnsight_codi.evaluation import batches_in_order, eval_batches, generate_answers
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.batching import batches_by_length
from nnsight_codi.tracing.loop import run_loop

# Left padding of 0, 3 and 6 positions: the pads' rows are fully masked in the prompt call.
QUESTIONS = ["tom has 3 pens . he gets 4 more . how many pens ?", "he loses 2 pens . how many ?",
             "the answer is"]
MAX_NEW = 8


def _layer_norm(x, ln):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], ln.weight, ln.bias, ln.eps)


class HandGPT2:
    """GPT-2 forward by hand with a KV cache. `pad_rows`: what a fully masked prompt row computes —
    "all" (attend to every key: CUDA 4.52), "uniform" (equal weights: 4.52 on CPU), "zero" (output 0)."""

    def __init__(self, lm, pad_rows: str = "all") -> None:
        self.lm, self.pad_rows = lm, pad_rows
        self.heads = lm.config.n_head
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.length = 0

    def _attention(self, block, x, layer, allowed):
        b, t, d = x.shape
        h, hd = self.heads, d // self.heads
        qkv = x @ block.attn.c_attn.weight + block.attn.c_attn.bias
        q, k, v = (z.view(b, t, h, hd).transpose(1, 2) for z in qkv.split(d, dim=-1))
        if self.cache is not None and layer < len(self.cache):
            pk, pv = self.cache[layer]
            k, v = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
            self.cache[layer] = (k, v)
        else:
            self.cache.append((k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)                       # [b, h, t, keys]
        if allowed is not None:
            full = allowed.unsqueeze(1).expand_as(scores)
            empty = ~allowed.any(-1)                                           # [b, t]: fully masked rows
            scores = scores.masked_fill(~full, float("-inf"))
            if self.pad_rows == "all":
                raw = q @ k.transpose(-1, -2) / math.sqrt(hd)
                scores = torch.where(empty[:, None, :, None], raw, scores)
            elif self.pad_rows == "uniform":
                scores = torch.where(empty[:, None, :, None], torch.zeros_like(scores), scores)
            weights = torch.softmax(scores, -1)
            if self.pad_rows == "zero":
                weights = torch.where(empty[:, None, :, None], torch.zeros_like(weights), weights)
        else:
            weights = torch.softmax(scores, -1)
        out = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return out @ block.attn.c_proj.weight + block.attn.c_proj.bias

    def forward(self, embeds: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """`embeds` [b, t, d] (token embeddings, no positions); returns the final-normed hidden states."""
        tr = self.lm.transformer
        t = embeds.shape[1]
        pos = torch.arange(self.length, self.length + t)                     # positions count the padding
        x = embeds + tr.wpe(pos)[None]
        if self.cache is None:
            self.cache = []
        for layer, block in enumerate(tr.h):
            x = x + self._attention(block, _layer_norm(x, block.ln_1), layer, allowed)
            hidden = _layer_norm(x, block.ln_2)
            mlp = block.mlp
            x = x + (mlp.act(hidden @ mlp.c_fc.weight + mlp.c_fc.bias) @ mlp.c_proj.weight + mlp.c_proj.bias)
        self.length += t
        return _layer_norm(x, tr.ln_f)


@torch.no_grad()
def hand_loop(codi, questions, pad_rows: str = "all", max_new: int = MAX_NEW):
    """The reference's batched loop, by hand: answer ids [b, max_new] (eos repeated after a row ends)."""
    lm, cfg = codi._module, codi.codi_config
    prompts = codi.encode(questions)
    ids, mask = prompts.input_ids, prompts.attention_mask.bool()
    t = ids.shape[1]
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None] & mask[:, None, :]  # causal + padding
    net = HandGPT2(lm, pad_rows)
    wte, prj = lm.transformer.wte, codi.prj._module
    h = net.forward(wte(ids), allowed)[:, -1:]
    for _ in range(codi.num_latents):
        h = net.forward(prj(h))[:, -1:]
    x = wte(torch.full((ids.shape[0], 1), cfg.eot_id))
    out, done = [], torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(max_new):
        logits = net.forward(x)[:, -1] @ wte.weight.T
        logits[:, cfg.eot_id] = float("-inf")
        nxt = torch.where(done, torch.full_like(logits[:, 0], cfg.eos_id, dtype=torch.long), logits.argmax(-1))
        done |= nxt == cfg.eos_id
        out.append(nxt)
        x = wte(nxt[:, None])
    return torch.stack(out, 1)


@pytest.fixture(scope="module")
def codi(tmp_path_factory):
    return load_model(make_converted(tmp_path_factory.mktemp("m"), num_latents=3), dtype="float64")


def _cut(tokens: torch.Tensor, eos: int) -> list[list[int]]:
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


@pytest.mark.parametrize("remote", [None, "local"])
def test_reference_masking_equals_the_cuda_rule_by_hand(codi, remote):
    assert len({len(codi.prompt_ids(q)) for q in QUESTIONS}) == 3  # left padding in two rows
    want = hand_loop(codi, QUESTIONS, "all")
    got, _ = run_loop(codi, codi.encode(QUESTIONS), max_new_tokens=MAX_NEW, masking="reference", remote=remote)
    eos = codi.codi_config.eos_id
    assert _cut(got, eos) == _cut(want, eos)


def test_the_masked_row_rule_matters_here(codi):
    """The batch is one where the rule decides answers: the other stacks' rules give other tokens, so the
    test above can fail."""
    eos = codi.codi_config.eos_id
    cuda = _cut(hand_loop(codi, QUESTIONS, "all"), eos)
    assert cuda != _cut(hand_loop(codi, QUESTIONS, "uniform"), eos)
    assert cuda != _cut(hand_loop(codi, QUESTIONS, "zero"), eos)
    exact, _ = run_loop(codi, codi.encode(QUESTIONS), max_new_tokens=MAX_NEW, masking="exact")
    assert cuda != _cut(exact, eos)
    # the unpadded row (the longest prompt) is the same under every rule
    assert cuda[0] == _cut(hand_loop(codi, QUESTIONS, "zero"), eos)[0]


def test_hidden_states_of_pad_rows_follow_the_rule(codi):
    """The prompt call's last-layer output at a pad position equals the hand forward's (attend to all)."""
    prompts = codi.encode(QUESTIONS)
    t = prompts.input_ids.shape[1]
    allowed = torch.ones(t, t, dtype=torch.bool).tril()[None] & prompts.attention_mask.bool()[:, None, :]
    with torch.no_grad():
        want = HandGPT2(codi._module, "all").forward(codi._module.transformer.wte(prompts.input_ids), allowed)
    with codi.latent_generate(prompts, num_latents=0, max_new_tokens=1, masking="reference") as tracer:
        for step in tracer.iter[:1]:
            got = codi.transformer.ln_f.output.save()
    torch.testing.assert_close(got, want, atol=1e-9 * float(want.abs().max()), rtol=0)


def test_reference_mode_eval_batches_are_consecutive_rows(codi, monkeypatch):
    assert batches_in_order(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    lengths = [5, 1, 4, 1, 3, 9, 2]
    assert eval_batches(lengths, 3, "reference") == [[0, 1, 2], [3, 4, 5], [6]]
    assert eval_batches(lengths, 3, "exact") == batches_by_length(lengths, 3) != batches_in_order(7, 3)
    with pytest.raises(ValueError, match="batch_size"):
        batches_in_order(3, 0)

    import nnsight_codi.evaluation as evaluation

    seen = []
    real = evaluation.run_loop

    def recording(model, prompts, *args, **kwargs):
        seen.append(prompts.input_ids.clone())
        return real(model, prompts, *args, **kwargs)

    monkeypatch.setattr(evaluation, "run_loop", recording)
    questions = [QUESTIONS[i % 3] + " ." * (i % 2) for i in range(5)]
    texts = generate_answers(codi, questions, batch_size=2, max_new_tokens=3, masking="reference", progress=False)
    assert [len(batch) for batch in seen] == [2, 2, 1]
    for b, batch in enumerate(seen):
        want = codi.encode(questions[2 * b: 2 * b + 2]).input_ids
        assert torch.equal(batch, want)
    # each answer is the one its consecutive batch gives
    for b in range(3):
        group = questions[2 * b: 2 * b + 2]
        tokens, _ = real(codi, codi.encode(group), max_new_tokens=3, masking="reference")
        assert texts[2 * b: 2 * b + 2] == codi.decode(tokens)
