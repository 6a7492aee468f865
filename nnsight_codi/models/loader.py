"""One entry point for every model: `load_model(spec, device=..., dtype=...)`.

`spec` may be:
- `"tiny"`: the tiny CODI model shipped inside this package (offline, ~1 s);
- `"tiny-instruct"`: the tiny instruct LM shipped inside this package (a plain HF causal LM with a
  chat template; see `nnsight_codi.instruct`);
- a converted CODI directory (has `codi.json`) — the normal, fast path;
- a reference CODI checkpoint (`pytorch_model.bin` / `model.safetensors`, or a directory
  holding one), converted in memory (needs `base=`, or a registry entry naming the base);
- a registry hub id (`zen-E/CODI-gpt2`, …): downloaded (needs network) then converted;
- anything else: a plain Hugging Face causal LM (hub id or local directory), returned as an
  nnsight `TransformersModel`.

Example:
    >>> codi = load_model("tiny")                           # doctest: +SKIP
    >>> codi.answer(["Tom has 3 pens . He gets 4 more . How many pens does Tom have now ?"])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from nnsight import TransformersModel

from .config import CodiConfig, CodiFormatError
from .converted import is_converted_dir, load_projection

TINY_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-codi"
TINY_INSTRUCT_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-instruct"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`"auto"`/None → cuda if available else cpu; anything else is validated."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available on this machine")
    return device


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def load_converted(directory: str | Path, device: str | torch.device | None = "cpu",
                   dtype: str | torch.dtype | None = "float32"):
    """Load a converted CODI directory as a `CodiModel` (no network)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..tracing.codi_model import CodiModel

    directory = Path(directory)
    config = CodiConfig.load(directory)
    prj = load_projection(directory)
    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    try:
        lm = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as err:
        raise CodiFormatError(f"{directory}: cannot load the merged LM or tokenizer: {err}") from err
    _check_special_ids(config, lm.config.vocab_size, directory)
    if lm.config.hidden_size != prj[1].in_features:
        raise CodiFormatError(
            f"{directory}: projection expects width {prj[1].in_features}, LM hidden size is {lm.config.hidden_size}"
        )
    tokenizer.padding_side = "left"
    lm = lm.to(device).eval()
    return CodiModel(lm, tokenizer=tokenizer, task="text-generation", codi_config=config, prj=prj)


def _check_special_ids(config: CodiConfig, vocab_size: int, where: Any) -> None:
    for name in ("pad_id", "bot_id", "eot_id", "eos_id"):
        value = getattr(config, name)
        if value is not None and value >= vocab_size:
            raise CodiFormatError(f"{where}: {name}={value} is outside the vocabulary (size {vocab_size})")


def load_model(spec: str | Path, device: str | torch.device | None = "cpu",
               dtype: str | torch.dtype | None = "float32", base: str | None = None, **kwargs: Any):
    """Load a CODI model (`CodiModel`) or a plain HF causal LM (`TransformersModel`). See module doc."""
    from .checkpoint import find_checkpoint_file, load_reference_checkpoint
    from .registry import lookup

    spec_str = str(spec)
    if spec_str == "tiny":
        if not is_converted_dir(TINY_MODEL_DIR):
            raise FileNotFoundError(f"the shipped tiny CODI model is missing at {TINY_MODEL_DIR}")
        return load_converted(TINY_MODEL_DIR, device, dtype)
    if spec_str == "tiny-instruct":  # the shipped tiny instruct LM: a plain HF causal LM
        if not (TINY_INSTRUCT_DIR / "config.json").is_file():
            raise FileNotFoundError(f"the shipped tiny instruct model is missing at {TINY_INSTRUCT_DIR}")
        return load_plain_lm(TINY_INSTRUCT_DIR, device, dtype)
    path = Path(spec_str).expanduser()
    if path.exists():
        if is_converted_dir(path):
            return load_converted(path, device, dtype)
        ckpt = find_checkpoint_file(path)
        if ckpt is not None:
            return load_reference_checkpoint(ckpt, base=base, device=device, dtype=dtype, **kwargs)
        if path.is_dir() and (path / "config.json").is_file():
            return load_plain_lm(path, device, dtype)
        raise CodiFormatError(
            f"{path}: neither a converted CODI directory (codi.json), a CODI checkpoint "
            "(pytorch_model.bin / model.safetensors with codi.* keys) nor a HF model directory"
        )
    entry = lookup(spec_str)
    if entry is not None:
        from .hub import download_checkpoint

        ckpt = download_checkpoint(entry)
        return load_reference_checkpoint(ckpt, base=base or entry.base, entry=entry, device=device, dtype=dtype)
    if "/" not in spec_str:
        raise ValueError(
            f"unknown model {spec_str!r}: not 'tiny', not an existing path, not a known CODI checkpoint "
            "and not a hub id (owner/name)"
        )
    return load_plain_lm(spec_str, device, dtype)


def load_plain_lm(spec: str | Path, device: str | torch.device | None = "cpu",
                  dtype: str | torch.dtype | None = "float32") -> TransformersModel:
    """A plain HF causal LM as an nnsight `TransformersModel` (hub id or local directory)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    lm = AutoModelForCausalLM.from_pretrained(str(spec), dtype=torch_dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(spec), padding_side="left")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return TransformersModel(lm, tokenizer=tokenizer, task="text-generation")
