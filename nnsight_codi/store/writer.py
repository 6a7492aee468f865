"""`StoreWriter`: stream a capture into a zarr v3 group batch by batch, resumably.

The store is preallocated for all examples when first opened (an xarray template written with
`to_zarr(compute=False)`, so plain `xarray.open_zarr` sees labeled dims and coordinates); every
`write` fills the rows of one batch and then records them in the manifest (atomic JSON). Zarr's
local store writes each chunk atomically too, so a writer killed at any moment leaves every
example either complete (in the manifest) or pending, never half-recorded. Memory is bounded by
the batch. A `fcntl.flock` lock refuses a second concurrent writer; a config fingerprint refuses
resuming with a different configuration.

Example:
    >>> import numpy as np, tempfile
    >>> path = tempfile.mkdtemp() + "/run.zarr"
    >>> w = StoreWriter(path, variables=["hidden", "correct"], config={"model_id": "tiny"},
    ...                 coords={"example": ["a", "b", "c"], "layer": [0, 1, 2],
    ...                         "step_name": step_names(1)},
    ...                 sizes={"dim": 4}, chunk=2)
    >>> with w:
    ...     for idx in w.batches():
    ...         w.write(idx, {"hidden": np.zeros((len(idx), 3, 3, 4)),
    ...                       "correct": np.ones(len(idx), bool)})
    >>> with StoreWriter(path, **w.init_kwargs) as again:  # resume: nothing left to do
    ...     print(again.pending().tolist())
    []
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnsight_codi.store.fingerprints import diff_fingerprints, mismatch_summary
from nnsight_codi.store.layout import COMPRESSIONS, LOCK_NAME, StoreLayout
from nnsight_codi.store.manifest import MANIFEST_NAME, Manifest, remove_stale_temp_files
from nnsight_codi.store.schema import (
    AUTOMATIC,
    FLOAT_DTYPES,
    SCHEMA_VERSION,
    SIZED_DIMS,
    VARIABLES,
    needed_sizes,
    step_names,
    uses_position,
    validate_layers,
    validate_variables,
)
from nnsight_codi.store.store_errors import (
    ConfigMismatchError,
    SchemaError,
    SchemaVersionError,
    StoreError,
    StoreLockedError,
)


class StoreWriter(StoreLayout):
    """Write a capture into a zarr v3 store, resumably; use as a context manager.

    Args:
        path: store directory (created; its parent too).
        variables: names from `schema.VARIABLES` (or a mapping name → dims, checked against the
            schema). `prompt_length`/`complete` are always stored.
        coords: `example` (stable ids, required), optional `question` (one string per example),
            `step_name` (default from `config["num_latents"]`), `layer` (the captured layers).
        sizes: sizes of `dim`, `position`, `k`, `head`, `head_dim` as the variables need them.
            `position` is the fixed max width of position-dimensioned variables (e.g. max
            prompt length + K + 2); narrower batches are padded.
        config: the capture configuration (JSON-able: model id/revision, dataset, limit,
            variables, interventions, …). Stored in attrs; with the layout it forms the
            fingerprint a resumed capture must match.
        num_examples: optional check of `len(coords["example"])`.
        num_layers: the model's number of blocks L; if given, layers are checked to be in 0..L.
        dtype: "float32" or "float16", the storage dtype of float variables.
        chunk: examples per zarr chunk (use the batch size). A resumed store keeps its own.
        pad_id: fill of `prompt_ids` past the prompt.
        compression: "blosc" (lz4 + bitshuffle: fast, ~10% smaller on float32 activations,
            much smaller on padded position arrays), "zstd" (level 1: slower) or "none".
        command: provenance command line (default `sys.argv`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        variables: Sequence[str] | Mapping[str, Sequence[str]],
        coords: Mapping[str, Sequence[Any]],
        sizes: Mapping[str, int] | None = None,
        config: Mapping[str, Any] | None = None,
        num_examples: int | None = None,
        num_layers: int | None = None,
        dtype: str = "float32",
        chunk: int = 32,
        pad_id: int = -1,
        compression: str | None = "blosc",
        command: str | None = None,
    ) -> None:
        self.init_kwargs = dict(variables=variables, coords=coords, sizes=sizes, config=config,
                                num_examples=num_examples, num_layers=num_layers, dtype=dtype,
                                chunk=chunk, pad_id=pad_id, compression=compression,
                                command=command)
        self.path = Path(path)
        self.variables = _check_variables(variables)
        self.all_variables = self.variables + tuple(AUTOMATIC)
        if dtype not in FLOAT_DTYPES:
            raise SchemaError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r} "
                              "(bfloat16 captures are stored as float32 or float16)")
        self.dtype = dtype
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise SchemaError(f"chunk must be a positive int, got {chunk!r}")
        self.chunk = chunk
        self.pad_id = int(pad_id)
        self.compression = "none" if compression is None else compression
        if self.compression not in COMPRESSIONS:
            raise SchemaError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.config = _jsonable(dict(config or {}), "config")
        self.command = command if command is not None else " ".join(sys.argv)
        self.num_layers = num_layers
        self.coords = self._check_coords(coords, num_examples)
        self.sizes = self._check_sizes(sizes or {})
        self.num_examples = len(self.coords["example"])
        self.fingerprint = {"config": self.config, "layout": self._layout()}
        self.manifest: Manifest | None = None
        self._lock_fd: int | None = None
        self._arrays: dict[str, Any] = {}
        self._session_recorded = False

    # ----------------------------------------------------------------- validation
    def _check_coords(self, coords: Mapping[str, Sequence[Any]],
                      num_examples: int | None) -> dict[str, list]:
        known = {"example", "question", "step_name", "layer", "cot", "source_token", "source_kind"}
        unknown = set(coords) - known
        if unknown:
            raise SchemaError(f"unknown coords {sorted(unknown)}; valid: {sorted(known)}")
        if "example" not in coords:
            raise SchemaError("coords['example'] (one stable id per example) is required")
        ids = [str(x) for x in coords["example"]]
        if not ids:
            raise SchemaError("coords['example'] is empty")
        if len(set(ids)) != len(ids):
            dups = sorted(x for x, c in Counter(ids).items() if c > 1)[:5]
            raise SchemaError(f"example ids must be unique; duplicated: {dups}")
        if num_examples is not None and num_examples != len(ids):
            raise SchemaError(f"num_examples={num_examples} but {len(ids)} example ids given")
        out: dict[str, list] = {"example": ids}
        if "question" in coords:
            qs = [str(q) for q in coords["question"]]
            if len(qs) != len(ids):
                raise SchemaError(f"{len(qs)} questions for {len(ids)} examples")
            out["question"] = qs
        if "cot" in coords:
            cots = [str(c) for c in coords["cot"]]
            if len(cots) != len(ids):
                raise SchemaError(f"{len(cots)} cot strings for {len(ids)} examples")
            out["cot"] = cots
        for name in ("source_token", "source_kind"):
            if name in coords:
                rows = [[str(t) for t in row] for row in coords[name]]
                if len(rows) != len(ids):
                    raise SchemaError(f"coords[{name!r}] has {len(rows)} rows for {len(ids)} examples")
                out[name] = rows
        dims = {d for v in self.all_variables for d in VARIABLES[v].dims}
        if "step" in dims:
            if "step_name" in coords:
                names = [str(s) for s in coords["step_name"]]
            elif "num_latents" in self.config:
                names = step_names(int(self.config["num_latents"]))
            else:
                raise SchemaError("coords['step_name'] (or config['num_latents']) is needed for "
                                  f"variables with a step dim: {self._vars_with('step')}")
            if not names or len(set(names)) != len(names):
                raise SchemaError(f"step names must be non-empty and unique: {names}")
            out["step_name"] = names
        if "layer" in dims:
            if "layer" not in coords and self.num_layers is None:
                raise SchemaError("coords['layer'] (or num_layers) is needed for variables with "
                                  f"a layer dim: {self._vars_with('layer')}")
            out["layer"] = list(validate_layers(coords.get("layer"), self.num_layers))
        return out

    def _check_sizes(self, sizes: Mapping[str, int]) -> dict[str, int]:
        derived = {"example": len(self.coords["example"]),
                   "step": len(self.coords.get("step_name", [])),
                   "layer": len(self.coords.get("layer", []))}
        out: dict[str, int] = {}
        for name, value in sizes.items():
            if name in derived:
                if derived[name] and value != derived[name]:
                    raise SchemaError(f"sizes[{name!r}]={value} but the coords give "
                                      f"{derived[name]}")
                continue
            if name in ("kv", "kv_part"):
                if value != 2:
                    raise SchemaError(f"sizes[{name!r}] must be 2 (key, value), got {value}")
                continue
            if name not in SIZED_DIMS:
                raise SchemaError(f"unknown size {name!r}; valid: {', '.join(SIZED_DIMS)}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SchemaError(f"sizes[{name!r}] must be a positive int, got {value!r}")
            out[name] = int(value)
        missing = [d for d in needed_sizes(self.all_variables) if d not in out]
        if missing:
            raise SchemaError(f"sizes missing for {missing} (needed by "
                              f"{sorted({v for d in missing for v in self._vars_with(d)})})")
        keep = needed_sizes(self.all_variables)
        return {d: out[d] for d in keep}

    def _vars_with(self, dim: str) -> list[str]:
        return [v for v in self.all_variables if dim in VARIABLES[v].dims]

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> StoreWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> StoreWriter:
        """Create or reopen the store; take the lock. All checks happen here, before any work."""
        if self._lock_fd is not None:
            raise StoreError(f"writer for {self.path} is already open")
        self._make_dir()
        self._lock_fd = _acquire_lock(self.path)
        try:
            self._open_locked()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock (the store stays resumable)."""
        self._arrays = {}
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _make_dir(self) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise StoreError(f"cannot write store at {p}: it exists and is not a directory")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create store directory {p}: {e.strerror or e}") from e
        if not os.access(p, os.W_OK | os.X_OK):
            raise StoreError(f"cannot write store at {p}: directory is not writable")
        self._refuse_foreign()  # before the lock file is created in someone else's directory

    def _refuse_foreign(self) -> None:
        p = self.path
        if (p / MANIFEST_NAME).exists():
            return
        others = sorted(x.name for x in p.iterdir()
                        if x.name != LOCK_NAME and not x.name.startswith(f".{MANIFEST_NAME}"))
        if others:
            raise StoreError(
                f"{p} is not empty and has no {MANIFEST_NAME}: it is not a store written by "
                f"StoreWriter (or its manifest was deleted); refusing to write into it. "
                f"Contents: {others[:8]}")

    def _open_locked(self) -> None:
        p = self.path
        if (p / MANIFEST_NAME).exists():
            m = Manifest.load(p)
            if m.schema_version != SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"store {p} has schema version {m.schema_version}; this writer writes "
                    f"version {SCHEMA_VERSION}; use a new output path")
            diff = diff_fingerprints(m.fingerprint, self.fingerprint)
            if diff:
                err = ConfigMismatchError(
                    f"store {p} was created with another configuration ({mismatch_summary(m.fingerprint, self.fingerprint)})"
                    ": use another output path, or delete the store to capture again")
                err.differences = diff  # every differing key, with both values
                raise err
            if m.num_examples != self.num_examples:  # covered by the fingerprint; be safe
                raise ConfigMismatchError(f"store {p} holds {m.num_examples} examples, "
                                          f"not {self.num_examples}")
            remove_stale_temp_files(p)
            if not m.initialized:  # killed while creating the template: nothing is complete
                self._clear_zarr_content()
                self._create_template()
                m.initialized = True
                m.save(p)
        else:
            self._refuse_foreign()
            m = Manifest(fingerprint=self.fingerprint, num_examples=self.num_examples)
            m.save(p)
            self._create_template()
            m.initialized = True
            m.save(p)
        self.manifest = m
        self._open_arrays()

    def _clear_zarr_content(self) -> None:
        for x in self.path.iterdir():
            if x.name == LOCK_NAME or x.name == MANIFEST_NAME:
                continue
            if x.is_dir():
                shutil.rmtree(x)
            else:
                x.unlink()

    def _open_arrays(self) -> None:
        import zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = zarr.open_group(self.path, mode="r+", zarr_format=3)
            self._arrays = {name: group[name] for name in self.all_variables}
        for name, arr in self._arrays.items():
            if tuple(arr.shape) != self.shape(name):
                raise StoreError(f"store {self.path}: variable {name} has shape {arr.shape}, "
                                 f"expected {self.shape(name)}")
        # chunk and compression are storage details, not part of the fingerprint: a resumed
        # capture with another batch size keeps the store's chunking
        self.chunk = int(self._arrays["complete"].chunks[0])

    # ----------------------------------------------------------------- progress
    def _check_open(self) -> Manifest:
        if self._lock_fd is None or self.manifest is None:
            raise StoreError("StoreWriter is not open; use `with writer:` or writer.open()")
        return self.manifest

    def pending(self) -> np.ndarray:
        """Indices (sorted) of examples not yet written."""
        return self._check_open().pending()

    def pending_ids(self) -> list[str]:
        """Example ids not yet written."""
        ids = self.coords["example"]
        return [ids[i] for i in self.pending()]

    @property
    def num_completed(self) -> int:
        return self._check_open().num_completed

    @property
    def is_complete(self) -> bool:
        return self.num_completed == self.num_examples

    def batches(self, batch_size: int | None = None) -> Iterator[np.ndarray]:
        """Pending indices in batches of at most `batch_size` (default: the chunk size).

        Batches never straddle a multiple of `batch_size`, so with `batch_size == chunk` every
        batch writes whole chunks (fast, and each chunk is written by one batch).
        """
        size = batch_size or self.chunk
        todo = self.pending()
        if todo.size == 0:
            return iter(())
        cuts = np.flatnonzero(np.diff(todo // size) != 0) + 1
        return iter(np.split(todo, cuts))

    # ----------------------------------------------------------------- writing
    def write(self, indices: Sequence[int] | np.ndarray, data: Mapping[str, Any]) -> None:
        """Write one batch: `data[name]` has shape `(len(indices), *shape(name)[1:])`.

        Every requested variable must be given (and `prompt_length` when a variable has a
        `position` dim). Position-dimensioned arrays may be narrower than the store and are
        padded with the fill value; positions must already be left-aligned (see
        `positions.left_align`). `kv` may omit layer 0 (which has no cache). Arrays may be
        numpy arrays or torch tensors (bfloat16 is converted). Everything is checked before
        anything is written; the batch is recorded in the manifest last.
        """
        batch = self.check_batch(indices, data)
        if batch is not None:
            self.commit(*batch)

    def check_batch(self, indices: Sequence[int] | np.ndarray,
                    data: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
        """Validate one batch and convert it to the stored dtypes/widths, writing nothing.

        Returns `(sorted indices, arrays in that order)` for `commit`, or None for an empty batch.
        """
        m = self._check_open()
        idx = _check_indices(indices, self.num_examples)
        if idx.size == 0:
            return None
        done = np.isin(idx, self._unavailable_indices(m))
        if done.any():
            raise StoreError(f"examples {idx[done][:8].tolist()} are already complete in "
                             f"{self.path}; write only writer.pending() examples")
        required = set(self.variables) | ({"prompt_length"} if uses_position(self.variables)
                                          else set())
        allowed = required | {"prompt_length"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SchemaError(f"write(): unexpected variable(s) {unknown}; this store holds "
                              f"{sorted(allowed)}")
        missing = sorted(required - set(data))
        if missing:
            raise SchemaError(f"write(): missing variable(s) {missing}")
        order = np.argsort(idx, kind="stable")
        idx = idx[order]
        arrays = {name: self._prepare(name, value, len(idx))[order]
                  for name, value in data.items()}
        return idx, arrays

    def _unavailable_indices(self, m: Manifest) -> np.ndarray:
        """Indices a new batch may not contain (complete ones; a background writer adds queued ones)."""
        return m.completed_indices()

    def commit(self, idx: np.ndarray, arrays: Mapping[str, np.ndarray]) -> None:
        """Write a batch from `check_batch` into the arrays, then record it in the manifest (last)."""
        m = self._check_open()
        if not self._session_recorded:
            m.sessions = (m.sessions + [_session_record(self.command)])[-100:]
            self._session_recorded = True
        for name in self.all_variables:
            if name in arrays:
                self._write_array(name, idx, arrays[name])
        self._write_array("complete", idx, np.ones(len(idx), dtype=bool))
        m.mark(idx)
        m.save(self.path)

    def _write_array(self, name: str, idx: np.ndarray, values: np.ndarray) -> None:
        arr = self._arrays[name]
        start = 0
        for a, b in _runs(idx):
            arr[a:b] = values[start:start + (b - a)]
            start += b - a

    def _prepare(self, name: str, value: Any, n: int) -> np.ndarray:
        spec = VARIABLES[name]
        x = _to_numpy(value)
        want = (n,) + self.shape(name)[1:]
        if name == "kv" and x.ndim == len(want) and 0 in self.coords["layer"] \
                and x.shape[1] == want[1] - 1:
            x = _insert_nan_layer(x, self.coords["layer"].index(0))
        if "position" in spec.dims and x.ndim == len(want):
            ax = spec.dims.index("position")
            width = x.shape[ax]
            if width > want[ax]:
                raise SchemaError(
                    f"write(): {name} has {width} positions but the store's max width is "
                    f"{want[ax]}; create the store with a larger sizes['position']")
            if width < want[ax]:
                pad = [(0, 0)] * x.ndim
                pad[ax] = (0, want[ax] - width)
                x = np.pad(_cast(name, spec, x, self.dtype), pad,
                           constant_values=spec.fill_value(self.pad_id))
        if x.shape != want:
            raise SchemaError(f"write(): {name} has shape {x.shape}, expected {want} "
                              f"(dims {spec.dims})")
        return _cast(name, spec, x, self.dtype)


# --------------------------------------------------------------------- helpers
def _check_variables(variables: Sequence[str] | Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    if isinstance(variables, str):
        raise SchemaError("variables must be a list of names, not a string "
                          "(use schema.parse_variables for 'a,b')")
    if isinstance(variables, Mapping):
        names = validate_variables(list(variables))
        for name in names:
            dims = tuple(variables[name])
            expected = VARIABLES[name].dims
            if dims not in (expected, expected[1:]):
                raise SchemaError(f"variable {name} has dims {expected} in the schema, "
                                  f"not {dims}")
        return names
    return validate_variables(variables)


def _check_indices(indices: Any, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise SchemaError(f"indices must be a 1-d sequence of ints, got {idx.dtype} "
                          f"shape {idx.shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise SchemaError(f"example indices must be in 0..{n - 1}, got {idx.min()}..{idx.max()}")
    if np.unique(idx).size != idx.size:
        raise SchemaError("example indices within a batch must be unique")
    return idx


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """Sorted indices → contiguous half-open runs."""
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, cuts)]


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, without importing
        t = value.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        return t.numpy()
    return np.asarray(value)


def _cast(name: str, spec: Any, x: np.ndarray, float_dtype: str) -> np.ndarray:
    kind = spec.kind
    if kind == "float" or kind == "float64":
        if x.dtype == object:
            try:
                x = x.astype(np.float64)  # None -> nan
            except (TypeError, ValueError) as e:
                raise SchemaError(f"write(): {name} must be numeric: {e}") from None
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise SchemaError(f"write(): {name} must be a float array, got {x.dtype}")
        if kind == "float" and float_dtype == "float16" and x.size and x.dtype != np.float16:
            big = np.nanmax(np.abs(np.where(np.isfinite(x), x, 0)))
            if big > np.finfo(np.float16).max:
                warnings.warn(f"{name}: |value| up to {big:.4g} exceeds the float16 range and "
                              "is stored as inf; use dtype='float32'", stacklevel=4)
        with np.errstate(over="ignore"):
            return x.astype(float_dtype if kind == "float" else np.float64, copy=False)
    if kind == "int32":
        if not np.issubdtype(x.dtype, np.integer):
            raise SchemaError(f"write(): {name} must be an integer array, got {x.dtype}")
        if x.size and (x.min() < np.iinfo(np.int32).min or x.max() > np.iinfo(np.int32).max):
            raise SchemaError(f"write(): {name} values do not fit int32")
        return x.astype(np.int32, copy=False)
    if kind == "str":
        if x.dtype.kind not in ("U", "O"):
            raise SchemaError(f"write(): {name} must be an array of strings, got {x.dtype}")
        out = np.empty(x.size, dtype=object)
        out[:] = [str(v) for v in x.ravel()]
        return out.reshape(x.shape)
    if kind == "bool":
        if x.dtype != bool:
            if np.issubdtype(x.dtype, np.integer) and np.isin(x, (0, 1)).all():
                return x.astype(bool)
            raise SchemaError(f"write(): {name} must be a bool array, got {x.dtype}")
        return x
    raise AssertionError(kind)


def _insert_nan_layer(x: np.ndarray, at: int) -> np.ndarray:
    x = x.astype(np.float32, copy=False) if not np.issubdtype(x.dtype, np.floating) else x
    nan = np.full(x.shape[:1] + (1,) + x.shape[2:], np.nan, dtype=x.dtype)
    return np.concatenate([x[:, :at], nan, x[:, at:]], axis=1)


def _jsonable(obj: Any, what: str) -> Any:
    def default(o: Any) -> Any:
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, set | frozenset):
            return sorted(o)
        raise TypeError(f"{type(o).__name__} {o!r}")

    try:
        return json.loads(json.dumps(obj, default=default, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise SchemaError(f"{what} must be JSON-serializable: {e}") from None


def _acquire_lock(directory: Path) -> int:
    lock = directory / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot create lock file {lock}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StoreLockedError(
            f"store {directory} is being written by another process (pid {holder}); "
            "wait for it to finish or stop it first") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _session_record(command: str) -> dict[str, Any]:
    return {"started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "pid": os.getpid(), "command": command}
