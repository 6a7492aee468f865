"""`codi.json`: everything beyond the HF model that a CODI model needs to run.

A converted CODI directory is a standard Hugging Face model directory (merged LM +
tokenizer) plus `prj.safetensors` (the latent projection) and `codi.json` (this
dataclass). Loading such a directory is fast and needs no network.

Example:
    >>> cfg = CodiConfig(pad_id=100, bot_id=101, eot_id=102, num_latents=6)
    >>> CodiConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_cli import config_from_dict
from .family import known_families

CODI_JSON = "codi.json"
PRJ_FILE = "prj.safetensors"
FORMAT_VERSION = 1


class CodiFormatError(ValueError):
    """A checkpoint, converted directory or `codi.json` is malformed."""


@dataclass(frozen=True)
class CodiConfig:
    """Token ids, latent count and prompt format of one CODI model.

    Attributes:
        pad_id: id used for left padding (the reference uses V, the base vocabulary size).
        bot_id: beginning-of-thought token id (reference: V+1).
        eot_id: end-of-thought token id (reference: V+2).
        num_latents: number of latent iterations K the model was trained with.
        remove_eos: the reference's `remove_eos`; if False the prompt ends `eos, bot` and the
            answer phase starts with `eot, eos`.
        prompt_suffix: text appended to the (cleaned) question, e.g. the answer-only variant's
            " Output only the answer and nothing else.".
        use_prj: feed `prj(h)` back (True) or `h` itself (False).
        eos_id: id that ends decoding (the tokenizer's eos); `None` to decode to the length limit.
        family: architecture family, "gpt2" or "llama" (informational; the HF config decides).
        latent_family: the latent-reasoning family whose loop rules apply (`models.family`: "codi",
            "coconut"); a `codi.json` without it is CODI.
        latent_id: the id of the token a family's input holds at latent positions (Coconut's
            `<|latent|>`), if it has one; the pause control's default constant input.
        source, revision, base: provenance of the checkpoint this directory was converted from.
    """

    pad_id: int
    bot_id: int
    eot_id: int
    num_latents: int = 6
    remove_eos: bool = True
    prompt_suffix: str = ""
    use_prj: bool = True
    eos_id: int | None = None
    family: str = "gpt2"
    latent_family: str = "codi"
    latent_id: int | None = None
    source: str | None = None
    revision: str | None = None
    base: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        ids = {"pad_id": self.pad_id, "bot_id": self.bot_id, "eot_id": self.eot_id}
        for name, value in ids.items():
            if not isinstance(value, int) or value < 0:
                raise CodiFormatError(f"codi config: {name} must be a non-negative int, got {value!r}")
        if self.bot_id == self.eot_id:
            raise CodiFormatError("codi config: bot_id and eot_id must differ")
        if self.latent_id is not None and (not isinstance(self.latent_id, int) or self.latent_id < 0):
            raise CodiFormatError(f"codi config: latent_id must be a non-negative int, got {self.latent_id!r}")
        if self.latent_family not in known_families():
            raise CodiFormatError(f"codi config: unknown latent_family {self.latent_family!r} "
                                  f"(known: {', '.join(known_families())})")
        if not isinstance(self.num_latents, int) or self.num_latents < 0:
            raise CodiFormatError(f"codi config: num_latents must be an int >= 0, got {self.num_latents!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CodiConfig":
        if not isinstance(data, dict):
            raise CodiFormatError(f"codi config must be a JSON object, got {type(data).__name__}")
        missing = [n for n in ("pad_id", "bot_id", "eot_id") if n not in data]
        if missing:
            raise CodiFormatError(f"codi config: missing fields {missing}")
        version = data.get("format_version", FORMAT_VERSION)
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise CodiFormatError(
                f"codi config: format_version {version} is newer than this package reads ({FORMAT_VERSION})"
            )
        try:  # unknown keys and wrong types
            return config_from_dict(cls, data, "codi config")
        except CodiFormatError:
            raise
        except ValueError as err:
            raise CodiFormatError(str(err)) from None

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CODI_JSON
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "CodiConfig":
        path = Path(directory) / CODI_JSON
        if not path.is_file():
            raise CodiFormatError(f"{path} not found: not a converted CODI directory")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise CodiFormatError(f"{path} is not valid JSON: {err}") from err
        return cls.from_dict(data)
