"""Read activation stores as lazy, labeled `xarray.Dataset`s, and helpers analyses need.

A store is a plain zarr v3 group written through xarray, so `xarray.open_zarr(path)` opens it
too (same dims and coordinates, without this package); `open_store` adds the schema-version
check and keeps only the examples the manifest lists as complete.

Example::

    ds = open_store("runs/out/capture.zarr")
    h = select_steps(ds, "latent3").hidden.sel(layer=12)      # (example, dim), lazy
    right = select_correct(ds, True)
    both = concat_conditions({"base": ds, "steered": open_store("steered.zarr")})
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from nnsight_codi.store.manifest import Manifest
from nnsight_codi.store.schema import SCHEMA_VERSION, VARIABLES
from nnsight_codi.store.store_errors import SchemaVersionError, StoreError

StoreLike = str | os.PathLike | xr.Dataset


def open_store(path: str | os.PathLike, *, complete_only: bool = True,
               chunks: Any = None) -> xr.Dataset:
    """Open a store lazily (dask arrays); only complete examples unless told.

    Dask chunks follow the stored chunks, except for sharded variables (`hidden`,
    `latent_input` in sharded stores (the current layout): one shard per batch, one step × one layer per chunk
    inside), whose dask chunks span up to ~128 MiB of examples, so a slice such as
    `hidden.sel(step=3, layer=6)` is one read of just those chunks. `chunks` overrides this
    (`{}`: exactly as stored).

    Raises `FileNotFoundError` if there is no store, `StoreError` if it is not an nnsight-codi
    store, `SchemaVersionError` if it was written by a newer schema, `ManifestError` if the
    manifest is unreadable.
    """
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"no zarr store at {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(path, chunks=chunks)  # None: lazily indexed, dask chunks chosen below
        if chunks is None:
            ds = ds.assign({name: var.chunk(read_chunks(var)) for name, var in ds.data_vars.items()})
    check_schema_version(ds.attrs, str(path))
    small = [n for n in ds.coords if n not in ds.indexes]  # question, step_name: load now
    ds = ds.assign_coords({n: ds[n].load() for n in small})
    manifest = Manifest.load(path)
    done = manifest.completed_indices() if manifest.initialized else np.zeros(0, np.int64)
    ds.attrs["num_completed"] = int(done.size)
    ds.attrs["store_path"] = str(path)
    if complete_only and done.size != ds.sizes["example"]:
        ds = ds.isel(example=done)
    return ds


DASK_CHUNK_BYTES = 128 * 2 ** 20


def read_chunks(var: xr.DataArray) -> dict[Hashable, int]:
    """Dask chunks to read a stored variable with: as stored; for a sharded one, stored chunks
    merged along `example` up to `DASK_CHUNK_BYTES` (the reads inside stay per stored chunk).
    """
    enc = var.encoding
    stored = dict(enc.get("preferred_chunks") or dict(zip(var.dims, enc.get("chunks") or var.shape)))
    if not enc.get("shards") or "example" not in stored:
        return stored
    rows = int(stored["example"])
    row_bytes = var.dtype.itemsize * int(np.prod([stored[d] for d in var.dims if d != "example"]))
    merged = max(rows, DASK_CHUNK_BYTES // max(row_bytes, 1) // rows * rows)
    return {**stored, "example": min(merged, var.sizes["example"])}


def check_schema_version(attrs: Mapping[str, Any], where: str = "store") -> int:
    """Return the store's schema version; raise if missing, malformed or newer than ours."""
    if "schema_version" not in attrs:
        raise StoreError(f"{where} is not an nnsight-codi activation store "
                         "(no schema_version attribute)")
    version = attrs["schema_version"]
    if not isinstance(version, int | np.integer) or isinstance(version, bool) or version < 1:
        raise SchemaVersionError(f"{where} has an unknown schema version {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where} was written with schema version {version}; this nnsight-codi reads up to "
            f"version {SCHEMA_VERSION}. Upgrade nnsight-codi to read it")
    return int(version)


def select_steps(ds: xr.Dataset, steps: str | int | Sequence[str | int]) -> xr.Dataset:
    """Select steps by name (`"latent3"`, `["bot", "eot"]`) or index; a scalar drops `step`.

    Example: `select_steps(ds, ["bot", "eot"]).step_name.values` → `['bot', 'eot']`.
    """
    names = [str(s) for s in ds["step_name"].values]
    values = [int(s) for s in ds["step"].values]
    by_name = dict(zip(names, values, strict=True))

    def one(s: str | int) -> int:
        if isinstance(s, str):
            if s not in by_name:
                raise KeyError(f"unknown step {s!r}; this store has steps {names}")
            return by_name[s]
        if int(s) not in values:
            raise KeyError(f"unknown step {s!r}; this store has steps {values} ({names})")
        return int(s)

    if isinstance(steps, str | int | np.integer):
        return ds.sel(step=one(steps))
    return ds.sel(step=[one(s) for s in steps])


def select_correct(ds: xr.Dataset, correct: bool = True) -> xr.Dataset:
    """Keep the examples whose `correct` equals `correct`."""
    if "correct" not in ds:
        raise KeyError("this store has no 'correct' variable (capture it with the answers)")
    flags = ds["correct"]
    if flags.dims != ("example",):
        raise ValueError(f"select_correct needs 'correct' with dims ('example',), got "
                         f"{flags.dims}; select a condition first")
    keep = np.flatnonzero(np.asarray(flags.values, dtype=bool) == bool(correct))
    return ds.isel(example=keep)


def concat_stores(stores: Iterable[StoreLike], dim: str = "example") -> xr.Dataset:
    """Join stores (paths or datasets) along `example`; other dims must match exactly.

    Example ids must not repeat (use `concat_conditions` for the same examples under several
    conditions). Stores with different `position` widths are padded to the widest.
    """
    dsets = _pad_positions([_as_dataset(s) for s in stores])
    if not dsets:
        raise ValueError("concat_stores: no stores given")
    if dim == "example":
        ids = np.array([str(x) for d in dsets for x in d["example"].values], dtype=object)
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise StoreError(f"concat_stores: example ids repeat across stores "
                             f"({uniq[counts > 1][:5].tolist()} …); use concat_conditions "
                             "to compare the same examples")
    _check_same_coords(dsets, exclude=(dim,))
    return xr.concat(dsets, dim=dim, data_vars="all", coords="minimal", compat="override",
                     join="exact", combine_attrs="drop_conflicts")


def concat_conditions(stores: Mapping[str, StoreLike], dim: str = "condition",
                      join: Literal["outer", "inner", "left", "right", "exact", "override"] = "inner",
                      ) -> xr.Dataset:
    """Stack stores of the same examples along a new labeled dim (`condition`).

    `join="inner"` keeps the examples present (complete) in every store; `"exact"` requires
    identical examples.
    """
    if not stores:
        raise ValueError("concat_conditions: no stores given")
    names = list(stores)
    dsets = _pad_positions([_as_dataset(stores[n]) for n in names])
    _check_same_coords(dsets, exclude=("example",))
    try:
        return xr.concat(dsets, dim=pd.Index(names, name=dim), data_vars="all",
                         coords="minimal", compat="override", join=join,
                         combine_attrs="drop_conflicts")
    except ValueError as e:
        raise StoreError(f"concat_conditions: stores do not align ({e})") from e


def _as_dataset(s: StoreLike) -> xr.Dataset:
    return s if isinstance(s, xr.Dataset) else open_store(s)


def _check_same_coords(dsets: list[xr.Dataset], exclude: Sequence[str]) -> None:
    first = dsets[0]
    for i, d in enumerate(dsets[1:], start=1):
        for name in ("step", "step_name", "layer", "k", "kv_part"):
            if name in exclude:
                continue
            a, b = first.coords.get(name), d.coords.get(name)
            if (a is None) != (b is None) or (
                    a is not None and b is not None and not np.array_equal(np.asarray(a.values, dtype=object),
                                                         np.asarray(b.values, dtype=object))):
                raise StoreError(f"stores 0 and {i} differ in coordinate {name!r}: "
                                 f"{None if a is None else a.values.tolist()} vs "
                                 f"{None if b is None else b.values.tolist()}")
        for dim in set(first.dims) & set(d.dims) - set(exclude) - {"position"}:
            if first.sizes[dim] != d.sizes[dim]:
                raise StoreError(f"stores 0 and {i} differ in the size of {dim!r}: "
                                 f"{first.sizes[dim]} vs {d.sizes[dim]}")


def _pad_positions(dsets: list[xr.Dataset]) -> list[xr.Dataset]:
    widths = {d.sizes["position"] for d in dsets if "position" in d.dims}
    if len(widths) <= 1:
        return dsets
    target = np.arange(max(widths))
    out = []
    for d in dsets:
        if "position" in d.dims and d.sizes["position"] < target.size:
            fills = {name: _fill_of(d, str(name)) for name in d.data_vars
                     if "position" in d[name].dims}
            d = d.reindex(position=target, fill_value=fills)
        out.append(d)
    return out


def _fill_of(ds: xr.Dataset, name: str) -> Any:
    if name == "prompt_ids":
        return ds[name].attrs.get("pad_id", ds.attrs.get("pad_id", -1))
    spec = VARIABLES.get(name)
    return spec.fill_value() if spec is not None else np.nan
