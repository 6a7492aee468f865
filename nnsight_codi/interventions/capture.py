"""A steered capture: `nnsight_codi.activation_capture.run_capture` with its intervention hooks built here.

`capture` (layer 4) takes the hooks' builder as a parameter instead of importing `interventions`, so the
two study modules import each other in one direction only (interventions → capture).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..activation_capture import CaptureConfig
from ..activation_capture import run_capture as _run_capture
from .conditions import capture_interventions

if TYPE_CHECKING:
    from nnsight import TransformersModel

    from ..tracing.codi_model import CodiModel


def run_capture(out: str | Path, config: CaptureConfig, codi: CodiModel | TransformersModel | None = None,
                progress: bool = True) -> dict[str, Any]:
    """`nnsight_codi.activation_capture.run_capture`, with `config.interventions` (condition dicts, each optionally with
    a `vectors` store path) run as steering hooks before `Capture`.
    """
    return _run_capture(out, config, codi=codi, progress=progress, interventions=capture_interventions)
