"""A tiny instruct-like HF model built in the tests: a 2-layer GPT-2 with a word-level tokenizer
that has a chat template (`User : … Assistant :`), random weights (larger init so different
inputs give different greedy tokens)."""

from __future__ import annotations

from pathlib import Path

import torch
from nnsight import TransformersModel
from transformers import GPT2Config, GPT2LMHeadModel

from nnsight_codi.cot.prompts import word_chat_tokenizer
from nnsight_codi.models.kv_cache import cache_kwargs, output_cache


def chat_lm(seed: int = 0, dim: int = 32, layers: int = 2, chat: bool = True) -> TransformersModel:
    tok = word_chat_tokenizer()
    tok.padding_side = "left"
    if not chat:
        tok.chat_template = None
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=layers, n_embd=dim, n_head=4, vocab_size=len(tok), n_positions=256,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    lm = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return TransformersModel(lm, tokenizer=tok, task="text-generation")


def save_chat_lm(directory: Path, **kwargs) -> Path:
    model = chat_lm(**kwargs)
    model._module.save_pretrained(directory)
    model.tokenizer.save_pretrained(directory)
    return directory


def block_hook_add(lm, layer: int, delta: torch.Tensor, first_only: bool = False):
    """Plain PyTorch: add `delta` to layer `layer`'s output (block layer-1) with a forward hook.
    Returns `(handle, calls)`; `calls` counts forwards of that block."""
    calls = []

    def hook(module, args, output):
        calls.append(1)
        if first_only and len(calls) > 1:
            return output
        out = output[0] if isinstance(output, tuple) else output
        out = out + delta
        return (out,) + tuple(output[1:]) if isinstance(output, tuple) else out

    return lm.transformer.h[layer - 1].register_forward_hook(hook), calls


def hand_means(lm, prompt, gen, positions="generated"):
    """Plain PyTorch: every layer's residual stream (block 0's input, then each block's output, via
    torch hooks), averaged over the generated positions (or read at the last prompt position)."""
    seq = torch.tensor([prompt + gen])
    blocks = lm.transformer.h
    outs = []
    handles = [blocks[0].register_forward_pre_hook(lambda m, a, kw: outs.append(a[0] if a else kw["hidden_states"]),
                                                    with_kwargs=True)]
    handles += [b.register_forward_hook(lambda m, a, o: outs.append(o[0] if isinstance(o, tuple) else o))
                for b in blocks]
    with torch.no_grad():
        lm(seq)
    for h in handles:
        h.remove()
    if positions == "last_prompt":
        return torch.stack([x[0, len(prompt) - 1].double() for x in outs])
    return torch.stack([x[0, len(prompt):].double().mean(0) for x in outs])


def hand_generate(lm, prompt, steps, hook=None, cache=True):
    """Greedy decoding in plain PyTorch (with or without the KV cache)."""
    seq = list(prompt)
    past = None
    with torch.no_grad():
        for _ in range(steps):
            if cache:
                inp = torch.tensor([seq if past is None else seq[-1:]])
                out = lm(inp, **cache_kwargs(past), use_cache=True)
                past = output_cache(out)
            else:
                out = lm(torch.tensor([seq]), use_cache=False)
            seq.append(int(out.logits[0, -1].argmax()))
    return seq[len(prompt):]
