"""Where the parts of a HF causal LM live, per architecture family (works on modules and envoys).

Example:
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=8, n_head=2, vocab_size=10))
    >>> len(transformer_blocks(lm)), type(final_norm(lm)).__name__
    (2, 'LayerNorm')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BLOCK_PATHS = ("transformer.h", "model.layers", "gpt_neox.layers", "model.decoder.layers")
FINAL_NORM_PATHS = ("transformer.ln_f", "model.norm", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm")


def first_attribute(obj: Any, paths: Sequence[str], what: str) -> Any:
    """The first dotted attribute path of `paths` that `obj` has (a module or an nnsight envoy)."""
    for path in paths:
        found = obj
        try:
            for part in path.split("."):
                found = getattr(found, part)
        except AttributeError:
            continue
        return found
    raise ValueError(f"cannot find the {what} of {type(getattr(obj, '_module', obj)).__name__} (tried {', '.join(paths)})")


def transformer_blocks(model: Any) -> Any:
    """The list of transformer blocks (`transformer.h` for GPT-2, `model.layers` for Llama-likes)."""
    return first_attribute(model, BLOCK_PATHS, "transformer blocks")


def final_norm(model: Any) -> Any:
    """The final norm applied before the unembedding (`transformer.ln_f`, `model.norm`, …)."""
    return first_attribute(model, FINAL_NORM_PATHS, "final norm")


def kv_geometry(config: Any) -> tuple[int, int]:
    """`(heads, head_dim)` of one block's KV cache under a HF model config: the key/value heads
    (`num_key_value_heads` under grouped-query attention, else all attention heads) and their size.

        >>> from transformers import GPT2Config, LlamaConfig
        >>> kv_geometry(GPT2Config(n_embd=8, n_head=2))
        (2, 4)
        >>> kv_geometry(LlamaConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=2))
        (2, 8)
    """
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    return heads, head_dim
