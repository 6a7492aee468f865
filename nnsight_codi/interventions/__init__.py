"""Interventions on the latent loop, as `StepHook`s of `tracing.loop.run_loop`.

- `steering`: `AddVector` (residual stream), `KVSteer` (KV cache after the last latent);
- `patching`: `PatchLatent` (given / random / mean / zero latent), `PatchResidual` (activation patching);
- `ablation`: `ForceAnswer` (teacher-forced answer log-probabilities);
- `vectors`: mean activations per latent and ordered-pair differences as labeled arrays;
- `conditions`: one intervention as the CLI spells it, run over a dataset (`run_conditions`: a batch's
  conditions as branches of one unsteered trunk, the shared prefix computed once);
- `sweep`: a resumable grid of conditions in one store with a `condition` dim.
"""

from ..store.vector_store import open_vectors, save_vectors, vectors_from_store
from .ablation import ForceAnswer, answer_mask
from .conditions import (
                         Condition,
                         ModelShape,
                         Resources,
                         build_hooks,
                         evaluate_conditions,
                         run_conditions,
                         validate_conditions,
)
from .patching import PATCH_KINDS, LatentStats, PatchLatent, PatchResidual, latent_patch_values
from .steering import KV_POSITIONS, AddVector, KVSteer
from .steering_vectors import load_vector_file, save_vector_file

__all__ = ["ForceAnswer", "answer_mask", "Condition", "ModelShape", "Resources", "build_hooks",
           "evaluate_conditions", "run_conditions", "validate_conditions", "PATCH_KINDS", "LatentStats", "PatchLatent",
           "PatchResidual", "latent_patch_values", "KV_POSITIONS", "AddVector", "KVSteer", "load_vector_file",
           "open_vectors", "save_vector_file", "save_vectors", "vectors_from_store"]
