"""Model loading: CODI checkpoints (reference layout or converted directories), the tiny CODI, plain LMs."""

from .config import CodiConfig, CodiFormatError
from .loader import load_converted, load_model, load_plain_lm
from .registry import CheckpointEntry, known_checkpoints, lookup, register_checkpoint

__all__ = ["CodiConfig", "CodiFormatError", "CheckpointEntry", "load_converted", "load_model", "load_plain_lm",
           "known_checkpoints", "lookup", "register_checkpoint"]
