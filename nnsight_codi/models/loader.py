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
from .devices import DTYPES, DEVICE_HELP, resolve_device, resolve_dtype  # noqa: F401  (re-exported)
from .sources import (HUB_ID, TINY_INSTRUCT_DIR, TINY_MODEL_DIR, ModelSourceError, check_model_source,  # noqa: F401
                      looks_like_path, one_line, with_hub_errors)


def check_lora_mode(lora_mode: str) -> str:
    from .lora_interventions import LORA_MODES

    if lora_mode not in LORA_MODES:
        raise ValueError(f"unknown lora_mode {lora_mode!r}; choose one of {', '.join(LORA_MODES)}")
    return lora_mode


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
        lm, info = AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype, output_loading_info=True,
                                                        ignore_mismatched_sizes=True)  # reported below, by name
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError, RuntimeError) as err:
        raise CodiFormatError(f"{directory}: cannot load the merged LM or tokenizer: {one_line(err)}") from err
    _check_loading_info(info, directory)
    from .checkpoint import base_ties_embeddings, check_head

    tied = config.extra.get("tied_head", base_ties_embeddings(lm.config))
    if bool(tied) != base_ties_embeddings(lm.config):
        raise CodiFormatError(f"{directory}: codi.json records the output head {'tied' if tied else 'untied'}, "
                              f"config.json has tie_word_embeddings={base_ties_embeddings(lm.config)}")
    check_head(lm, bool(tied), directory)
    _check_special_ids(config, lm.config.vocab_size, directory)
    if lm.config.hidden_size != prj[1].in_features:
        raise CodiFormatError(
            f"{directory}: projection expects width {prj[1].in_features}, LM hidden size is {lm.config.hidden_size}"
        )
    tokenizer.padding_side = "left"
    lm = lm.to(device).eval()
    return CodiModel(lm, tokenizer=tokenizer, task="text-generation", codi_config=config, prj=prj)


def _check_loading_info(info: dict, where: Any) -> None:
    """Missing or mis-shaped weights of a converted directory are an error naming them (never random init)."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(f"{item[0]} (file {tuple(item[1])}, expected {tuple(item[2])})"
                        if isinstance(item, (tuple, list)) and len(item) == 3 else str(item)
                        for item in (info.get("mismatched_keys") or []))
    problems = ([f"missing keys: {', '.join(missing)}"] if missing else []) + \
               ([f"mis-shaped keys: {', '.join(mismatched)}"] if mismatched else [])
    if problems:
        raise CodiFormatError(f"{where}: the weights do not match config.json: " + "; ".join(problems))


def _check_special_ids(config: CodiConfig, vocab_size: int, where: Any) -> None:
    for name in ("pad_id", "bot_id", "eot_id", "eos_id"):
        value = getattr(config, name)
        if value is not None and value >= vocab_size:
            raise CodiFormatError(f"{where}: {name}={value} is outside the vocabulary (size {vocab_size})")


NUMERICS = ("default", "reference")


def check_numerics(numerics: str, lora_mode: str) -> str:
    """Validate `numerics` and return the LoRA mode it runs in (`"reference"` computes LoRA unmerged:
    `"interventions"`; otherwise `lora_mode` itself)."""
    if numerics not in NUMERICS:
        raise ValueError(f"unknown numerics {numerics!r}; choose one of {', '.join(NUMERICS)}")
    return "interventions" if numerics == "reference" else lora_mode


def load_model(spec: str | Path, device: str | torch.device | None = "cpu",
               dtype: str | torch.dtype | None = "float32", base: str | None = None,
               lora_mode: str = "merged", numerics: str = "default", **kwargs: Any):
    """Load a CODI model (`CodiModel`) or a plain HF causal LM (`TransformersModel`). See module doc.

    `lora_mode="interventions"` runs a reference CODI checkpoint as its base model + LoRA applied
    as nnsight interventions (`models/lora_interventions.py`; the shape NDIF can run); the default
    `"merged"` merges LoRA into the weights. `numerics="reference"` reproduces the reference code's
    arithmetic in `dtype` (what it publishes in bfloat16): LoRA unmerged, computed in `dtype` as
    peft does (it implies `lora_mode="interventions"`), and every floating buffer cast as
    `module.to(dtype)` casts it (Llama's rotary `inv_freq` included); it needs a reference
    checkpoint. Errors are one line: unknown device, a path that does not exist (and is not a
    known hub id), a hub model that cannot be fetched.
    """
    from .checkpoint import find_checkpoint_file, load_reference_checkpoint
    from .registry import lookup

    spec_str = str(spec)
    check_lora_mode(lora_mode)
    lora_mode = check_numerics(numerics, lora_mode)
    if numerics == "reference":
        if spec_str in ("tiny", "tiny-instruct") or is_converted_dir(Path(spec_str).expanduser()):
            raise ValueError(f"numerics='reference' needs a reference CODI checkpoint with its LoRA tensors; "
                             f"{spec_str} is a merged model")
        kwargs["reference_numerics"] = True
    resolve_device(device)  # a bad device fails before any loading
    resolve_dtype(dtype)
    interventions = lora_mode == "interventions"
    if interventions:
        from .lora_interventions import load_lora_interventions as load_checkpoint
    else:
        load_checkpoint = load_reference_checkpoint
    if spec_str == "tiny":
        if interventions:
            raise ValueError("the shipped tiny model is a merged (converted) model: lora_mode='interventions' "
                             "needs a reference CODI checkpoint with its LoRA tensors")
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
            if interventions:
                raise ValueError(f"{path} is a converted (merged) CODI directory: lora_mode='interventions' needs "
                                 "the reference checkpoint with its LoRA tensors")
            return load_converted(path, device, dtype)
        ckpt = find_checkpoint_file(path)
        if ckpt is not None:
            if base is not None:
                check_model_source(base, "base")
            return with_hub_errors(lambda: load_checkpoint(ckpt, base=base, device=device, dtype=dtype, **kwargs),
                                    f"base model {base}")
        if path.is_dir() and (path / "config.json").is_file():
            if interventions:
                raise ValueError(f"{path} is a plain HF model: lora_mode='interventions' needs a CODI checkpoint")
            return load_plain_lm(path, device, dtype)
        raise CodiFormatError(
            f"{path}: neither a converted CODI directory (codi.json), a CODI checkpoint "
            "(pytorch_model.bin / model.safetensors with codi.* keys) nor a HF model directory"
        )
    entry = lookup(spec_str)
    if entry is not None:
        from .hub import download_checkpoint

        if base is not None:
            check_model_source(base, "base")
        ckpt = download_checkpoint(entry)
        return with_hub_errors(lambda: load_checkpoint(ckpt, base=base or entry.base, entry=entry, device=device,
                                                        dtype=dtype, **kwargs), f"base model {base or entry.base}")
    if looks_like_path(spec_str):
        raise FileNotFoundError(f"{spec_str}: no such file or directory, and not a known hub id")
    if "/" not in spec_str:
        raise ValueError(
            f"unknown model {spec_str!r}: not 'tiny', not an existing path, not a known CODI checkpoint "
            "and not a hub id (owner/name)"
        )
    if interventions:
        raise ValueError(f"{spec_str} is not a known CODI checkpoint: lora_mode='interventions' needs a reference "
                         "CODI checkpoint (a registry hub id or a local pytorch_model.bin / model.safetensors)")
    return with_hub_errors(lambda: load_plain_lm(spec_str, device, dtype), f"model {spec_str}")


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
