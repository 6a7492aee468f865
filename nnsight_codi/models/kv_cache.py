"""The name transformers gives the KV cache, argument and output, in the installed version.

transformers 5.24 renamed `past_key_values` to `cache` (the old name warns on every call and goes
in 5.40); 5.23, the oldest version this project allows, knows only `past_key_values`. Every LM
call of the library passes the cache as `**cache_kwargs(cache)` and reads it back with
`output_cache(out)`, so no version in the allowed range warns. Remote (NDIF) sessions keep
`past_key_values`: the server's transformers, not ours, runs the call, and every version up to
5.39 accepts that name (`REMOTE_CACHE_ARG`).

Example:
    >>> CACHE_ARG in ("cache", "past_key_values")
    True
    >>> list(cache_kwargs(None))  == [CACHE_ARG]
    True
    >>> import torch
    >>> from transformers import DynamicCache
    >>> cache = DynamicCache()
    >>> _ = cache.update(torch.zeros(1, 2, 3, 4), torch.ones(1, 2, 3, 4), 0)
    >>> cache_part(cache, 0, "keys").shape, float(cache_part(cache, 0, "values").sum())
    (torch.Size([1, 2, 3, 4]), 24.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import transformers
from packaging.version import Version

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor

CACHE_ARG = "cache" if Version(transformers.__version__).release >= (5, 24) else "past_key_values"
"""The keyword of a causal LM's `forward` (and attribute of its output) that holds the KV cache."""

REMOTE_CACHE_ARG = "past_key_values"
"""The name an NDIF session uses (the server's transformers may predate `cache`)."""


def cache_kwargs(cache: Any, name: str = CACHE_ARG) -> dict[str, Any]:
    """`{name: cache}`: the keyword argument that feeds `cache` to an LM call."""
    return {name: cache}


def output_cache(out: Any, name: str = CACHE_ARG) -> Any:
    """The KV cache of an LM call's output (a `ModelOutput` or an nnsight proxy of one)."""
    return getattr(out, name)


def served_cache(out: Any) -> Any:
    """The KV cache of an LM call's output, by the name *that output* uses (`cache` from transformers
    5.24, `past_key_values` before): decided where the code runs, from the object itself.

    Hooks that read the cache inside a trace use it: on NDIF they run against the server's output,
    whose transformers may predate (or postdate) the client's `CACHE_ARG`.

    >>> from types import SimpleNamespace
    >>> served_cache(SimpleNamespace(past_key_values="old")), served_cache(SimpleNamespace(cache="new"))
    ('old', 'new')
    """
    for name in (CACHE_ARG, "past_key_values" if CACHE_ARG == "cache" else "cache"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    raise AttributeError(f"{type(out).__name__} carries no KV cache (neither `cache` nor `past_key_values`): "
                         "call the LM with use_cache=True")


def cache_part(cache: Any, block: int, part: str) -> Float[Tensor, "batch head seq head_dim"]:
    """The live `Float[Tensor, "batch head seq head_dim"]` keys (`part="keys"`) or values
    (`"values"`) of block `block`'s cache (a transformers `Cache`, or an nnsight proxy of one);
    the one place that knows how a cache holds its tensors.
    """
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return getattr(layers[block], part)
    return (cache.key_cache if part == "keys" else cache.value_cache)[block]  # older transformers
