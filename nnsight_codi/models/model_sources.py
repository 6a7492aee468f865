"""Where a model spec points: the shipped tiny models, hub ids vs paths, one-line source errors.

Example:
    >>> looks_like_path("./runs/model"), looks_like_path("zen-E/CODI-gpt2")
    (True, False)
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import one_line
from .codi_config import CodiFormatError
from .registry import lookup

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
TINY_MODEL_DIR = ASSETS_DIR / "tiny-codi"
TINY_COCONUT_DIR = ASSETS_DIR / "tiny-coconut"
TINY_INSTRUCT_DIR = ASSETS_DIR / "tiny-instruct"
SHIPPED_LATENT = {"tiny": TINY_MODEL_DIR, "tiny-codi": TINY_MODEL_DIR, "tiny-coconut": TINY_COCONUT_DIR}
"""The shipped tiny latent-reasoning models by name, one per family (`tiny` is the tiny CODI)."""
SHIPPED_INSTRUCT = {"tiny-instruct": TINY_INSTRUCT_DIR,  # v3, the one the studies and the demo use
                    "tiny-instruct-v2": ASSETS_DIR / "tiny-instruct-v2",
                    "tiny-instruct-v1": ASSETS_DIR / "tiny-instruct-v1"}
"""The shipped tiny instruct models by name (each directory's TRAINING.md says how it was made)."""
VERSIONED_NAMES = {"tiny-instruct": "tiny-instruct-v3"}
"""Shipped names that have meant more than one model, and the name of the one they mean now:
`tiny-instruct` was v1 until 2026-12-06 02:31 UTC, v2 until 06:46 UTC, v3 since. Results record the
versioned name (`unambiguous_name`); `load_model` accepts it."""
SHIPPED_ALIASES = {versioned: name for name, versioned in VERSIONED_NAMES.items()}


def shipped_name(path: str | Path) -> str | None:
    """The name of the shipped model stored at `path` (`"tiny"`, `"tiny-instruct-v2"`, …), else None.

    >>> shipped_name(TINY_INSTRUCT_DIR), shipped_name(ASSETS_DIR / "tiny-codi"), shipped_name("/elsewhere")
    ('tiny-instruct', 'tiny', None)
    """
    where = Path(path).resolve()
    return next((name for name, d in {"tiny": TINY_MODEL_DIR, "tiny-coconut": TINY_COCONUT_DIR,
                                      **SHIPPED_INSTRUCT}.items() if d.resolve() == where), None)


def unambiguous_name(spec: object) -> str | None:
    """The shipped model `spec` names (a shipped name, an alias or the shipped directory), with its
    version where the plain name has meant several models; None for anything not shipped.

    >>> unambiguous_name("tiny-instruct"), unambiguous_name(TINY_INSTRUCT_DIR), unambiguous_name("tiny")
    ('tiny-instruct-v3', 'tiny-instruct-v3', 'tiny')
    >>> unambiguous_name("tiny-instruct-v1"), unambiguous_name("gpt2")
    ('tiny-instruct-v1', None)
    """
    if not isinstance(spec, (str, Path)):
        return None
    name = SHIPPED_ALIASES.get(str(spec), str(spec))
    if name not in {"tiny", "tiny-coconut", *SHIPPED_INSTRUCT}:
        path = Path(name).expanduser()
        name = shipped_name(path) if path.is_dir() else None
    return None if name is None else VERSIONED_NAMES.get(name, name)


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelSourceError(OSError):
    """A model could not be found or fetched (bad path, unknown id, no network): a one-line user error."""


def looks_like_path(spec: str) -> bool:
    """True for things a user means as a file system path (absolute, ./, ~, or not a valid hub id)."""
    return spec.startswith(("/", ".", "~")) or "\\" in spec or ("/" in spec and not HUB_ID.match(spec))


def check_model_source(spec: str | Path, what: str = "model") -> None:
    """Fail early (one line) for a source that is neither an existing path nor a plausible hub id."""
    spec = str(spec)
    if Path(spec).expanduser().exists():
        return
    if lookup(spec) is not None:
        return
    if looks_like_path(spec):
        raise FileNotFoundError(f"{spec}: no such file or directory, and not a known hub id")


def with_hub_errors(load, what: str):
    """Run `load`; hub and file errors of transformers/huggingface_hub become one-line `ModelSourceError`s."""
    try:
        return load()
    except CodiFormatError:
        raise
    except OSError as err:  # offline, not found, gated, HTTP errors (huggingface_hub raises OSError subclasses)
        raise ModelSourceError(f"cannot load {what}: {one_line(err)}") from err
    except ValueError as err:
        from huggingface_hub.errors import HFValidationError

        if isinstance(err, HFValidationError):
            raise ModelSourceError(f"cannot load {what}: {one_line(err)}") from err
        raise
