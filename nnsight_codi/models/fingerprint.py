"""A cheap fingerprint of a model's weights, so resumable outputs notice a retrained model.

Stores, grids and study outputs are keyed by their configuration, which names the model (hub id
or path) but not its weights: a checkpoint retrained in place under the same path would otherwise
resume, or silently reuse, results of the old weights. `weights_fingerprint` hashes every
parameter's name, shape, dtype and a strided sample of at most `samples` of its values (the
first and last included), so it costs a few small device→host copies for any model size, and any
retraining (which moves every weight) changes it.

A model without real weights (NDIF's meta-device copy) has no fingerprint (`None`); comparisons
treat `None` and an absent key as "unknown" (`same_weights`), so stores written before the key
existed, or remotely, still resume.

Example:
    >>> import torch
    >>> lin = torch.nn.Linear(3, 2)
    >>> fp = weights_fingerprint(lin)
    >>> with torch.no_grad():
    ...     _ = lin.bias.add_(1e-3)
    >>> weights_fingerprint(lin) != fp
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
from torch import nn

WEIGHTS_KEY = "model_weights"
"""The fingerprint key every resumable output uses."""


def weights_fingerprint(*modules: nn.Module | None, samples: int = 4096) -> str | None:
    """sha256 (16 hex digits) over the parameters of `modules` (names, shapes, dtypes, sampled values).

    `None` when any parameter lives on the meta device (a remote model's local copy) or there
    are no parameters.
    """
    digest = hashlib.sha256()
    count = 0
    for m, module in enumerate(modules):
        if module is None:
            continue
        for name, param in _named_tensors(module):
            if param.device.type == "meta":
                return None
            digest.update(f"{m}.{name}:{tuple(param.shape)}:{param.dtype}".encode())
            flat = param.detach().reshape(-1)
            if flat.numel() > samples:
                idx = torch.linspace(0, flat.numel() - 1, samples, device=flat.device).long()
                flat = flat[idx]
            digest.update(flat.float().cpu().numpy().tobytes())
            count += 1
    return digest.hexdigest()[:16] if count else None


def model_weights(model: object) -> str | None:
    """`weights_fingerprint` of an nnsight-wrapped model: the LM (`_module`) and, for CODI, its projection."""
    return weights_fingerprint(getattr(model, "_module", None), getattr(model, "prj", None))


def _named_tensors(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    yield from module.named_parameters()
    yield from module.named_buffers()


def same_weights(stored: str | None, current: str | None) -> bool:
    """False only when both fingerprints are known and differ."""
    return stored is None or current is None or stored == current
