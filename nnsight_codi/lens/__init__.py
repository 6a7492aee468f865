"""Lenses that read hidden states out as vocabulary distributions."""

from .logit import final_norm, logit_lens, top_tokens

__all__ = ["final_norm", "logit_lens", "top_tokens"]
