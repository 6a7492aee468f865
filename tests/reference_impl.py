"""An independent, plain-PyTorch CODI inference loop (codi.md §1), batch size 1.

It shares no code with the package: LoRA is applied *unmerged* with forward hooks, hidden
states are read with forward hooks on every block, and the loop is written out by hand.
"""

from __future__ import annotations

import inspect

import torch
from transformers import GPT2LMHeadModel

# the KV cache's name in the installed transformers (`cache` from 5.24, `past_key_values` before),
# read from the forward signature here rather than taken from the package
_CACHE = "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"


def cache_kwargs(cache) -> dict:
    return {_CACHE: cache}


def output_cache(out):
    return getattr(out, _CACHE)


def attach_lora(lm, lora: dict, scale: float) -> list:
    """Add `scale · x Aᵀ Bᵀ` to each target module's output (works for Linear and Conv1D)."""
    modules = dict(lm.named_modules())
    handles = []
    for name, (a, b) in lora.items():
        def hook(module, args, output, a=a, b=b):
            return output + (args[0] @ a.T @ b.T) * scale
        handles.append(modules[name].register_forward_hook(hook))
    return handles


def blocks_of(lm):
    return lm.transformer.h if hasattr(lm, "transformer") else lm.model.layers


@torch.no_grad()
def reference_run(lm, prj, prompt_ids: list[int], bot_id: int, eot_id: int, eos_id: int, num_latents: int,
                  max_new_tokens: int, use_prj: bool = True):
    """Returns (answer token ids, hidden[step] = list over layers 1..L of block outputs at the last position,
    latent_inputs list)."""
    captured: list[torch.Tensor] = []
    handles = [blk.register_forward_hook(lambda m, a, o: captured.append((o[0] if isinstance(o, tuple) else o)[:, -1].clone()))
               for blk in blocks_of(lm)]
    embed = lm.get_input_embeddings()
    hidden, latents, answer = [], [], []
    try:
        ids = torch.tensor([prompt_ids + [bot_id]])
        out = lm(input_ids=ids, use_cache=True, output_hidden_states=True)
        hidden.append(list(captured)); captured.clear()
        kv = output_cache(out)
        z = out.hidden_states[-1][:, -1:, :]
        for _ in range(num_latents):
            z = prj(z) if use_prj else z
            latents.append(z[:, -1].clone())
            out = lm(inputs_embeds=z, **cache_kwargs(kv), use_cache=True, output_hidden_states=True)
            hidden.append(list(captured)); captured.clear()
            kv = output_cache(out)
            z = out.hidden_states[-1][:, -1:, :]
        x = embed(torch.tensor([[eot_id]]))
        for _ in range(max_new_tokens):
            out = lm(inputs_embeds=x, **cache_kwargs(kv), use_cache=True)
            hidden.append(list(captured)); captured.clear()
            kv = output_cache(out)
            logits = out.logits[:, -1, : lm.config.vocab_size - 1]  # the reference masks only eot (last id)
            nxt = int(logits.argmax(-1))
            answer.append(nxt)
            if nxt == eos_id:
                break
            x = embed(torch.tensor([[nxt]]))
    finally:
        for h in handles:
            h.remove()
    return answer, hidden, latents


@torch.no_grad()
def reference_capture(lm, prj, prompt_ids: list[int], bot_id: int, eot_id: int, num_latents: int) -> dict:
    """Per step (bot, latents, eot) of one unpadded example: `hidden` [L+1, d] (layer 0 = block 0's
    input, layer l = block l-1's output), `latent_input` [d] (latent steps), `attention` [keys]
    (last query, mean over layers and heads; needs eager attention) and `kv` after the last latent
    ([L, 2, heads, seq, head_dim])."""
    blocks = blocks_of(lm)
    current: dict = {}
    handles = [blocks[0].register_forward_pre_hook(
        lambda m, args, kwargs: current.__setitem__(0, (args[0] if args else kwargs["hidden_states"])[:, -1].clone()),
        with_kwargs=True)]
    for i, blk in enumerate(blocks):
        handles.append(blk.register_forward_hook(
            lambda m, a, o, i=i: current.__setitem__(i + 1, (o[0] if isinstance(o, tuple) else o)[:, -1].clone())))
    steps = []

    def record(out, latent=None):
        attn = torch.stack([a[0, :, -1].mean(0) for a in out.attentions]).mean(0)
        steps.append({"hidden": torch.stack([current[l][0] for l in range(len(blocks) + 1)]),
                      "latent_input": latent, "attention": attn})

    try:
        out = lm(input_ids=torch.tensor([prompt_ids + [bot_id]]), use_cache=True, output_hidden_states=True,
                 output_attentions=True)
        record(out)
        kv_cache, z = output_cache(out), out.hidden_states[-1][:, -1:]
        for _ in range(num_latents):
            z = prj(z)
            out = lm(inputs_embeds=z, **cache_kwargs(kv_cache), use_cache=True, output_hidden_states=True,
                     output_attentions=True)
            record(out, z[0, -1].clone())
            kv_cache, z = output_cache(out), out.hidden_states[-1][:, -1:]
        kv = torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in kv_cache.layers])
        out = lm(input_ids=torch.tensor([[eot_id]]), **cache_kwargs(kv_cache), use_cache=True,
                 output_hidden_states=True, output_attentions=True)
        record(out)
    finally:
        for h in handles:
            h.remove()
    return {"steps": steps, "kv": kv}
