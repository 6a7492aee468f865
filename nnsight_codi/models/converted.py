"""Save and read the converted CODI directory format.

Layout (a standard Hugging Face model directory plus two files)::

    DIR/config.json, model.safetensors, tokenizer files   # the merged LM, loads with from_pretrained
    DIR/prj.safetensors                                   # the latent projection (keys 1.weight, …)
    DIR/codi.json                                         # CodiConfig: token ids, K, prompt format, provenance
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .codi_config import PRJ_FILE, CodiConfig, CodiFormatError
from .projection import projection_from_state_dict

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def save_converted(directory: str | Path, lm: PreTrainedModel, tokenizer, prj: nn.Module, config: CodiConfig) -> Path:
    """Write `lm` (a HF causal LM), `tokenizer`, `prj` and `config` as a converted CODI directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in prj.state_dict().items()}
    save_file(state, str(directory / PRJ_FILE))
    config.save(directory)
    return directory


def is_converted_dir(path: str | Path) -> bool:
    """Whether `path` is a converted CODI directory (has `codi.json`)."""
    path = Path(path)
    return path.is_dir() and (path / "codi.json").is_file()


def load_projection(directory: str | Path) -> nn.Sequential:
    """Load the projection of a converted CODI directory from its safetensors file."""
    path = Path(directory) / PRJ_FILE
    if not path.is_file():
        raise CodiFormatError(f"{path} not found: a converted CODI directory needs its projection")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise CodiFormatError(f"{path} is not a readable safetensors file: {err}") from err
    return projection_from_state_dict(state)


def read_codi_config(directory: str | Path) -> CodiConfig:
    """The `CodiConfig` saved in a converted CODI directory."""
    return CodiConfig.load(directory)
