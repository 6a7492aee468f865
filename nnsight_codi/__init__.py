"""nnsight-codi: interpretability for latent-reasoning (CODI) language models, built on nnsight.

Example:
    >>> from nnsight_codi import load_model            # doctest: +SKIP
    >>> codi = load_model("tiny")                       # doctest: +SKIP
"""

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("nnsight_codi.loading", "load_model"),
    "CodiConfig": ("nnsight_codi.models", "CodiConfig"),
    "CodiModel": ("nnsight_codi.tracing.codi_model", "CodiModel"),
    "run_loop": ("nnsight_codi.tracing.loop", "run_loop"),
    "run_branches": ("nnsight_codi.tracing.branches", "run_branches"),
    "Branch": ("nnsight_codi.tracing.branches", "Branch"),
    "open_store": ("nnsight_codi.store", "open_store"),
}


def __getattr__(name: str):
    # Lazy, so `nnsight_codi.store` and offline analyses do not import torch or nnsight.
    if name in _LAZY:
        import importlib  # noqa: PLC0415  the root package imports nothing at import time

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'nnsight_codi' has no attribute {name!r}")


__all__ = list(_LAZY) + ["__version__"]
