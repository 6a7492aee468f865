"""Model formats and weights: CODI configs, reference checkpoints, converted directories, the registry.

Assembling a model from them is `nnsight_codi.loading` (`load_model`).
"""

from .codi_config import CodiConfig, CodiFormatError
from .registry import CheckpointEntry, known_checkpoints, lookup, register_checkpoint

__all__ = ["CodiConfig", "CodiFormatError", "CheckpointEntry", "known_checkpoints", "lookup", "register_checkpoint"]
