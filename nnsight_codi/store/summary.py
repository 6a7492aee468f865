"""Describe a store: schema, dims, sizes on disk, completed examples, provenance.

Example::

    info = store_summary("out/capture.zarr")
    info["examples"]["completed"], info["bytes_on_disk"]     # (128, 40960123)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nnsight_codi.store.manifest import Manifest
from nnsight_codi.store.reader import open_store


def dir_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def store_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able description of the store at `path`."""
    path = Path(path)
    ds = open_store(path, complete_only=False)
    manifest = Manifest.load(path)
    variables = {}
    for name, var in ds.data_vars.items():
        enc_chunks = var.encoding.get("chunks") or var.encoding.get("preferred_chunks")
        variables[name] = {
            "dims": list(var.dims),
            "shape": list(var.shape),
            "dtype": str(var.dtype),
            "chunks": list(enc_chunks.values()) if isinstance(enc_chunks, dict)
            else list(enc_chunks or []),
            "bytes": int(var.nbytes),
            "bytes_on_disk": dir_bytes(path / str(name)),
        }
    coords = {name: {"dims": list(c.dims), "dtype": str(c.dtype)} for name, c in ds.coords.items()}
    if "step_name" in ds.coords:
        coords["step_name"]["values"] = [str(s) for s in ds["step_name"].values]
    if "layer" in ds.coords:
        coords["layer"]["values"] = [int(x) for x in ds["layer"].values]
    attrs = {k: v for k, v in ds.attrs.items() if k not in ("num_completed", "store_path")}
    return {
        "path": str(path),
        "schema_version": ds.attrs.get("schema_version"),
        "dims": {str(k): int(v) for k, v in ds.sizes.items()},
        "variables": variables,
        "coords": coords,
        "examples": {"total": manifest.num_examples, "completed": manifest.num_completed,
                     "ranges": manifest.completed},
        "bytes_on_disk": dir_bytes(path),
        "sessions": manifest.sessions,
        "provenance": attrs,
    }
