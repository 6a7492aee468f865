"""The store manifest: which examples are complete, written atomically.

The manifest is `manifest.json` inside the zarr group directory. It is rewritten after every
batch with write-to-temp + `os.replace`, so a reader or a resumed writer always sees either the
old or the new version, never a torn one, whatever moment the writer is killed at.
Completed examples are kept as sorted, merged half-open index ranges `[start, stop)`.

Example:
    >>> m = Manifest(fingerprint={"a": 1}, num_examples=10)
    >>> m.mark([0, 1, 2, 5]); m.completed
    [[0, 3], [5, 6]]
    >>> m.pending().tolist()
    [3, 4, 6, 7, 8, 9]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnsight_codi.store.schema import SCHEMA_VERSION
from nnsight_codi.store.store_errors import ManifestError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "nnsight-codi-manifest"
MANIFEST_VERSION = 1


def ranges_from_indices(indices: Iterable[int]) -> list[list[int]]:
    """Sorted unique indices → merged half-open ranges: `[0,1,2,5] → [[0,3],[5,6]]`."""
    idx = np.unique(np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices,
                               dtype=np.int64))
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [idx.size]])
    return [[int(idx[a]), int(idx[b - 1]) + 1] for a, b in zip(starts, stops, strict=True)]


def indices_from_ranges(ranges: Iterable[Iterable[int]]) -> np.ndarray:
    """Half-open ranges → sorted index array."""
    parts = [np.arange(a, b, dtype=np.int64) for a, b in ranges]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class Manifest:
    """Completed-example bookkeeping of one store.

    Attributes:
        fingerprint: the capture configuration + store layout the store was created with.
        num_examples: number of examples the store was preallocated for.
        completed: merged half-open ranges of completed example indices.
        initialized: False until the zarr template is fully written.
        sessions: one record per writer session (start time, pid, command).
    """

    fingerprint: dict[str, Any]
    num_examples: int
    completed: list[list[int]] = field(default_factory=list)
    initialized: bool = False
    sessions: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def completed_indices(self) -> np.ndarray:
        """Sorted indices of completed examples."""
        return indices_from_ranges(self.completed)

    def pending(self) -> np.ndarray:
        """Sorted indices of examples not yet completed."""
        done = np.zeros(self.num_examples, dtype=bool)
        for a, b in self.completed:
            done[a:b] = True
        return np.flatnonzero(~done)

    @property
    def num_completed(self) -> int:
        return sum(b - a for a, b in self.completed)

    def mark(self, indices: Iterable[int]) -> None:
        """Record `indices` as completed (merging ranges)."""
        new = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        self.completed = ranges_from_indices(np.concatenate([self.completed_indices(), new]))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "schema_version": self.schema_version,
            "initialized": self.initialized,
            "num_examples": self.num_examples,
            "num_completed": self.num_completed,
            "completed": self.completed,
            "fingerprint": self.fingerprint,
            "sessions": self.sessions,
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write `directory/manifest.json` atomically (temp file + `os.replace`)."""
        write_json_atomic(Path(directory) / MANIFEST_NAME, self.to_json())

    @classmethod
    def from_json(cls, data: Any, where: str = "manifest") -> Manifest:
        """Validate a parsed manifest; anything inconsistent raises `ManifestError`."""
        def bad(why: str) -> ManifestError:
            return ManifestError(
                f"corrupt manifest {where}: {why}. The data was not touched; restore the "
                "manifest (or delete the store to start over)")

        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise bad(f"not an {MANIFEST_FORMAT} document")
        if data.get("version") != MANIFEST_VERSION:
            raise bad(f"unsupported manifest version {data.get('version')!r}")
        n = data.get("num_examples")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad(f"num_examples must be a non-negative int, got {n!r}")
        ranges = data.get("completed")
        if not isinstance(ranges, list):
            raise bad("'completed' must be a list of [start, stop) ranges")
        prev = 0
        for r in ranges:
            ok = (isinstance(r, list) and len(r) == 2
                  and all(isinstance(x, int) and not isinstance(x, bool) for x in r))
            if not ok or not prev <= r[0] < r[1] <= n:
                raise bad(f"bad completed range {r!r} (ranges must be sorted, disjoint, "
                          f"non-empty and within 0..{n})")
            prev = r[1]
        fp = data.get("fingerprint")
        if not isinstance(fp, dict):
            raise bad("'fingerprint' must be an object")
        init = data.get("initialized")
        if not isinstance(init, bool):
            raise bad("'initialized' must be true or false")
        sessions = data.get("sessions", [])
        if not isinstance(sessions, list):
            raise bad("'sessions' must be a list")
        sv = data.get("schema_version", SCHEMA_VERSION)
        return cls(fingerprint=fp, num_examples=n, completed=[list(r) for r in ranges],
                   initialized=init, sessions=sessions, schema_version=sv)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Manifest:
        """Read and validate `directory/manifest.json` (`ManifestError` if missing or bad)."""
        path = Path(directory) / MANIFEST_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ManifestError(f"no manifest at {path}: not a store written by StoreWriter, "
                                "or its manifest was deleted") from None
        except OSError as e:
            raise ManifestError(f"cannot read manifest {path}: {e}") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(
                f"corrupt manifest {path}: invalid JSON ({e}). The data was not touched; restore "
                "the manifest (or delete the store to start over)") from None
        return cls.from_json(data, where=str(path))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write JSON to `path` so that readers see the old or the new file, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(directory: str | os.PathLike) -> int:
    """Delete temp files left by a killed writer (manifest temps and zarr `*.partial` chunks)."""
    directory = Path(directory)
    count = 0
    for p in directory.glob(f".{MANIFEST_NAME}.*.tmp"):
        p.unlink(missing_ok=True)
        count += 1
    for p in directory.rglob("*.partial"):
        p.unlink(missing_ok=True)
        count += 1
    return count
