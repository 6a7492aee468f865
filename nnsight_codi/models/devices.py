"""Device and dtype of a model: `resolve_device` ("auto", validated) and `resolve_dtype` (names → torch dtypes).

Example:
    >>> resolve_dtype("bfloat16"), resolve_device("cpu")
    (torch.bfloat16, device(type='cpu'))
"""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
DEVICE_HELP = "use cpu, cuda, cuda:N, mps or auto"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`"auto"`/None → cuda if available else cpu; anything else is validated (ValueError, one line)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}: {DEVICE_HELP}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {str(device)!r} requested but MPS is not available on this machine")
    elif resolved.type != "cpu":
        raise ValueError(f"device {str(device)!r} is not supported: {DEVICE_HELP}")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """The torch dtype of a name in `DTYPES` (a dtype is returned as is, None is float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[dtype]
