"""Lenses that read hidden states out as vocabulary distributions: the logit lens, the tuned lens,
their read-outs (top-k, entropy) and the unembedding a store can carry.

Submodules import torch only where they need it (`unembed` and `readout.store_lens` are numpy), so
offline analyses can use them without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"final_norm": "logit", "logit_lens": "logit", "top_tokens": "logit", "TunedLens": "tuned",
         "Unembedding": "unembed", "store_lens": "readout", "lens_readouts": "readout"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
