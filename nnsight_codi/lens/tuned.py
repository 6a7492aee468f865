"""The tuned lens: one affine translator per layer, in tuned-lens's residual form and file layout.

Translator i acts on residual-stream layer i (i = 0..L-1; layer L, the last block's output, is read
with the plain logit lens): `h ↦ h + W_i h + b_i`, then the model's final norm and unembedding.
The translators start at zero, so an untrained tuned lens is exactly the logit lens.

Saved as tuned-lens saves (`config.json` with `base_model_name_or_path`, `d_model`,
`num_hidden_layers`, `bias`, `base_model_revision`, `unembed_hash`, `lens_type`; `params.pt`
with the state dict of `layer_translators`, keys `{i}.weight / {i}.bias`, exactly what tuned-lens's
`TunedLens.save` writes and its loader reads), so lenses move between this tool and tuned-lens.
A `params.pt` whose keys carry the `layer_translators.` prefix (a whole-lens state dict) loads too.
This project's own provenance (training data mode, optimiser settings) goes into a sidecar file,
`nnsight_codi.json`, so tuned-lens reads `config.json` without warnings. The unembedding hash is
tuned-lens's own (`Unembed.unembedding_hash()`, the same for every dtype of a model); loading
checks it and refuses a lens trained for another model (lenses written before this scheme, with
an exact-bytes hash, are still accepted for the model they were trained on).

Example:
    >>> lens = TunedLens(d_model=8, num_hidden_layers=2, unembed_hash="x")
    >>> h = torch.randn(3, 8)
    >>> bool(torch.equal(lens.transform(h, 0), h))   # zero-initialised: the logit lens
    True
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from ..models.model_sources import shipped_name
from .logit import _module, unembedding
from .unembed import exact_weight_hash, weight_hash

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..tracing.codi_model import CodiModel

CONFIG_NAME = "config.json"
PARAMS_NAME = "params.pt"
SIDECAR_NAME = "nnsight_codi.json"  # this project's provenance, beside tuned-lens's two files
LEGACY_KEY = "nnsight_codi"  # where lenses written before the sidecar kept it (inside config.json)


class TunedLens(nn.Module):
    """Per-layer affine translators `layer_translators[i]: Linear(d_model, d_model)` (zero-init)."""

    def __init__(self, d_model: int, num_hidden_layers: int, unembed_hash: str | None = None,
                 base_model_name_or_path: str = "", base_model_revision: str | None = None,
                 bias: bool = True, extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = {"base_model_name_or_path": base_model_name_or_path, "d_model": int(d_model),
                       "num_hidden_layers": int(num_hidden_layers), "bias": bool(bias),
                       "base_model_revision": base_model_revision, "unembed_hash": unembed_hash,
                       "lens_type": "linear_tuned_lens"}
        self.extra = dict(extra or {})
        self.layer_translators = nn.ModuleList()
        for _ in range(num_hidden_layers):
            t = nn.Linear(d_model, d_model, bias=bias)
            nn.init.zeros_(t.weight)
            if bias:
                nn.init.zeros_(t.bias)
            self.layer_translators.append(t)

    @property
    def num_layers(self) -> int:
        return self.config["num_hidden_layers"]

    @classmethod
    def for_model(cls, model: CodiModel | PreTrainedModel, **extra: Any) -> TunedLens:
        """An untrained (zero) lens for a CODI model / HF LM."""
        lm = _module(model)
        cfg = getattr(model, "codi_config", None)
        return cls(d_model=int(lm.config.hidden_size), num_hidden_layers=int(lm.config.num_hidden_layers),
                   unembed_hash=weight_hash(unembedding(lm).weight),
                   base_model_name_or_path=base_model_name(model),
                   base_model_revision=cfg.revision if cfg else None, extra=extra)

    def transform(self, h: Tensor, layer: int) -> Tensor:
        """`Float[Tensor, "... d_model"]` at residual layer `layer` → the translated state."""
        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer {layer} out of range 0..{self.num_layers}")
        if layer == self.num_layers:
            return h
        t = cast(nn.Linear, self.layer_translators[layer])
        return h + t(h.to(t.weight.dtype)).to(h.dtype)

    def translators(self) -> dict[int, tuple[Any, Any]]:
        """`{layer: (W, b)}` as numpy arrays (for the offline lens)."""
        out = {}
        for i, t in enumerate(cast(list[nn.Linear], list(self.layer_translators))):
            b = t.bias if t.bias is not None else torch.zeros(t.weight.shape[0])
            out[i] = (t.weight.detach().float().cpu().numpy(), b.detach().float().cpu().numpy())
        return out

    # -- I/O ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write `config.json` + `params.pt` (tuned-lens's layout) into the directory `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.layer_translators.state_dict(), path / PARAMS_NAME)
        (path / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")
        sidecar = path / SIDECAR_NAME
        if self.extra:
            sidecar.write_text(json.dumps(self.extra, indent=2) + "\n")
        elif sidecar.exists():
            sidecar.unlink()
        return path

    @classmethod
    def load(cls, path: str | Path, model: CodiModel | PreTrainedModel | None = None,
             map_location: str = "cpu") -> TunedLens:
        """Load a lens directory; with `model`, refuse a lens trained for another unembedding."""
        path = Path(path)
        config_path, params_path = path / CONFIG_NAME, path / PARAMS_NAME
        if not config_path.is_file() or not params_path.is_file():
            raise FileNotFoundError(f"{path} is not a tuned-lens directory (needs {CONFIG_NAME} and {PARAMS_NAME})")
        config = json.loads(config_path.read_text())
        extra = config.pop(LEGACY_KEY, None)
        if (path / SIDECAR_NAME).is_file():
            extra = json.loads((path / SIDECAR_NAME).read_text())
        try:
            lens = cls(d_model=config["d_model"], num_hidden_layers=config["num_hidden_layers"],
                       unembed_hash=config.get("unembed_hash"),
                       base_model_name_or_path=config.get("base_model_name_or_path", ""),
                       base_model_revision=config.get("base_model_revision"), bias=config.get("bias", True),
                       extra=extra)
        except KeyError as err:
            raise ValueError(f"{config_path}: missing key {err}") from None
        state = torch.load(params_path, map_location=map_location, weights_only=True)
        prefix = "layer_translators."
        state = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
        try:
            lens.layer_translators.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{params_path}: parameters do not fit the config "
                             f"(d_model={config['d_model']}, layers={config['num_hidden_layers']}): "
                             f"{str(err).splitlines()[0]}") from None
        if model is not None:
            lens.check_model(model)
        return lens

    def check_model(self, model: CodiModel | PreTrainedModel) -> None:
        """Raise `ValueError` unless this lens fits `model` (shape and unembedding hash)."""
        lm = _module(model)
        d, layers = int(lm.config.hidden_size), int(lm.config.num_hidden_layers)
        if (d, layers) != (self.config["d_model"], self.num_layers):
            raise ValueError(f"tuned lens has d_model={self.config['d_model']}, {self.num_layers} layers; "
                             f"the model has d_model={d}, {layers} layers")
        expected = self.config.get("unembed_hash")
        weight = unembedding(lm).weight
        actual = weight_hash(weight)
        if expected and expected != actual and expected != exact_weight_hash(weight):
            raise ValueError(f"tuned lens was trained for another model: unembedding hash {expected[:12]}… "
                             f"!= this model's {actual[:12]}… (base {self.config['base_model_name_or_path']!r})")


def base_model_name(model: CodiModel | PreTrainedModel) -> str:
    """What to record as `base_model_name_or_path`: a name `load_model` (and, for plain HF models,
    tuned-lens) can load again — `tiny` / `tiny-instruct` for the shipped models, the hub id a
    CODI checkpoint was converted from, else the directory the model was loaded from.
    """
    lm = _module(model)
    path = str(getattr(lm.config, "name_or_path", "") or "")
    if path and (name := shipped_name(path)):
        return name
    cfg = getattr(model, "codi_config", None)
    source = str(getattr(cfg, "source", None) or "")
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*", source) and not Path(source).exists():
        return source
    return path or source
