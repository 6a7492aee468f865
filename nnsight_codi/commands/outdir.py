"""One guard for every command's output path (`--out`, `convert`'s DST): what it may already hold.

Each command writes one kind of artifact (`WRITES` below). Before any work, `check_out` looks at the
path: nothing there, or a directory of files no command wrote, is fine; the same kind of artifact is
left to the command, which resumes it or refuses it as its `--out` help says; another kind (a
capture store given to `lens train`, a model directory given to `capture`), a file where a
directory is wanted, or a path inside a store or model is refused with one line. The artifact is
told by its marker files only (no model, no torch), so the check costs a few `stat` calls.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "params.pt").touch()
    >>> artifact_at(d)
    'tuned lens'
    >>> check_out(d, "capture")
    Traceback (most recent call last):
    ...
    ValueError: --out ... holds a tuned lens, not a capture store; choose another path
"""

from __future__ import annotations

import json
from pathlib import Path

# The artifact each command's output path holds.
WRITES = {
    "capture": "capture store",
    "train": "training run",
    "lens train": "tuned lens",
    "dashboard": "dashboard",
    "eval": "predictions",
    "steer": "predictions",
    "sweep": "sweep",
    "cot-vectors extract": "CoT vector store",
    "cot-vectors sweep": "CoT grid file",
    "cot-vectors eval": "predictions",
    "convert": "CODI model",
    "demo": "demo",
}
# Artifacts nothing may be written inside (a store's or a model's files are its own).
SEALED = {"capture store", "CoT vector store", "vector store", "zarr store", "tuned lens", "CODI model", "model"}
FILE_ARTIFACTS = {"CoT grid file"}
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
_MARKERS = ("zarr.json", ".zgroup", "sweep.zarr", "train_config.json", "codi.json", "params.pt", "checkpoint.pt",
            "config.json", *_WEIGHTS, "index.html", "eval", "capture.zarr", "predictions.jsonl")


def _zarr_kind(path: Path) -> str:
    """A zarr group's kind from its root attributes (this project's stores carry a `format`)."""
    from ..store.layout import STORE_FORMAT
    from ..store.vector_store import VECTORS_FORMAT

    try:
        meta = json.loads((path / "zarr.json").read_text())
        attrs = meta.get("attributes", {}) if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        attrs = {}
    if attrs.get("format") == STORE_FORMAT:
        return "CoT vector store" if "steering_diff" in (attrs.get("variables") or ()) else "capture store"
    if attrs.get("format") == VECTORS_FORMAT:
        return "vector store"
    return "zarr store"


def artifact_at(path: str | Path) -> str | None:
    """The kind of artifact at `path` (a `WRITES` value, `zarr store` or `model`), None if none is recognised.

    A file is `CoT grid file` when it is JSON lines, else `file`.
    """
    path = Path(path)
    if path.is_file():
        return "CoT grid file" if path.suffix == ".jsonl" else "file"
    if not path.is_dir():
        return None
    names = {name for name in _MARKERS if (path / name).exists()}  # stat calls: no listing of a big directory
    if "zarr.json" in names or ".zgroup" in names:
        return _zarr_kind(path)
    if "sweep.zarr" in names:
        return "sweep"
    if "train_config.json" in names:
        return "training run"
    if "codi.json" in names:
        return "CODI model"
    if "params.pt" in names or "checkpoint.pt" in names:  # a finished lens, or one being trained
        return "tuned lens"
    if "config.json" in names and names & set(_WEIGHTS):
        return "model"
    if "index.html" in names:
        return "demo" if {"eval", "capture.zarr"} & names else "dashboard"
    if "predictions.jsonl" in names:
        return "predictions"
    return None


def check_out(path: str | Path | None, command: str, flag: str = "--out") -> Path | None:
    """Refuse `path` as `command`'s output when it holds another artifact, is a file where a directory is
    wanted, or lies inside a store or model; return it as a Path (None stays None). Same-kind artifacts pass.
    """
    if path is None:
        return None
    path = Path(path)
    wants = WRITES[command]
    found = artifact_at(path)
    if wants in FILE_ARTIFACTS and found == "file":
        raise ValueError(f"{flag} {path} is a file of another kind; {command} writes a {wants} (.jsonl)")
    if wants not in FILE_ARTIFACTS and path.is_file():
        raise ValueError(f"{flag} {path} is a file; {command} writes a {wants} (a directory)")
    if found is not None and found != wants:
        raise ValueError(f"{flag} {path} holds a {found}, not a {wants}; choose another path")
    if found is None and path.is_dir() and wants in FILE_ARTIFACTS:
        raise ValueError(f"{flag} {path} is a directory; {command} writes a {wants}")
    for parent in path.absolute().parents:
        kind = artifact_at(parent)
        if kind in SEALED:
            raise ValueError(f"{flag} {path} is inside a {kind} ({parent}); choose another path")
    return path
