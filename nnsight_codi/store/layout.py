"""The on-disk layout of an activation store: what `StoreWriter` creates and stamps.

`StoreLayout` turns a writer's checked settings (variables, coords, sizes, dtype, chunk) into the stored
shapes, the chunks and shards of each variable, the lazy xarray template the store is created from, its
provenance attributes, and the layout half of the fingerprint a resumed capture must match. The file names
and formats a store directory holds (`LOCK_NAME`, `STORE_FORMAT`) live here too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nnsight_codi.store.schema import (
    KV_NAMES,
    LAYER_DOC,
    POSITION_DOC,
    SCHEMA_VERSION,
    SOURCE_DOC,
    STEP_DOC,
    VARIABLES,
)
from nnsight_codi.store.store_errors import SchemaError

LOCK_NAME = ".nnsight_codi.lock"
STORE_FORMAT = "nnsight-codi activation store"
PROMOTED_CONFIG_KEYS = ("model_id", "model_revision", "num_latents", "interventions", "dataset")
"""Config keys also written as top-level provenance attributes."""
COMPRESSIONS = ("blosc", "zstd", "none")
SHARDED = ("hidden", "latent_input")
"""Variables stored as one shard per batch with one-step(-one-layer) chunks inside (`_inner_chunks`)."""
SHARD_MIN_BYTES = 64 * 2 ** 10
"""Shard only when one chunk inside the shard (`chunk` examples × one step × one layer) is at least
this big: below it whole-batch chunks are cheap to read, while sharding triples the write cost of
small batches (tiny model, batch 64: ~30 → ~95 ms per write)."""
VERSIONED_PACKAGES = ("nnsight-codi", "nnsight", "torch", "transformers", "xarray", "zarr",
                      "dask", "numpy")


class StoreLayout:
    """The shapes, chunks, template and provenance of a store, from the settings `StoreWriter` checks and sets."""

    path: Path
    variables: tuple[str, ...]
    all_variables: tuple[str, ...]
    coords: dict[str, list]
    sizes: dict[str, int]
    config: dict[str, Any]
    command: str
    num_layers: int | None
    num_examples: int
    dtype: str
    chunk: int
    pad_id: int
    compression: str

    def _layout(self) -> dict[str, Any]:
        ids = "\n".join(self.coords["example"]).encode()
        return {
            "schema_version": SCHEMA_VERSION,
            "variables": list(self.variables),
            "dtype": self.dtype,
            "pad_id": self.pad_id,
            "num_examples": len(self.coords["example"]),
            "examples_sha256": hashlib.sha256(ids).hexdigest(),
            "step_name": self.coords.get("step_name"),
            "layer": self.coords.get("layer"),
            "sizes": self.sizes,
        }

    def shape(self, name: str) -> tuple[int, ...]:
        """Full stored shape of a variable."""
        return tuple(self._dim_size(d) for d in VARIABLES[name].dims)

    def _dim_size(self, dim: str) -> int:
        if dim == "example":
            return self.num_examples
        if dim == "step":
            return len(self.coords["step_name"])
        if dim == "layer":
            return len(self.coords["layer"])
        if dim == "kv_part":
            return 2
        return self.sizes[dim]

    # ----------------------------------------------------------------- template
    def template(self) -> Any:
        """The lazy `xarray.Dataset` the store is created from (dask fill arrays + coords)."""
        import dask.array as da
        data_vars = {}
        for name in self.all_variables:
            spec = VARIABLES[name]
            shape = self.shape(name)
            dtype = spec.dtype(self.dtype)
            chunks = self._chunks(name)
            fill = spec.fill_value(self.pad_id)
            attrs: dict[str, Any] = {"description": spec.doc}
            if "step" in spec.dims:
                attrs["step_convention"] = STEP_DOC
            if "layer" in spec.dims:
                attrs["layer_convention"] = LAYER_DOC
            if "position" in spec.dims:
                attrs["position_convention"] = POSITION_DOC
            if name == "prompt_ids":
                attrs["pad_id"] = self.pad_id
            data_vars[name] = (spec.dims, da.full(shape, fill, dtype=dtype, chunks=chunks), attrs)
        coords: dict[str, Any] = {"example": ("example", _strings(self.coords["example"]),
                                              {"description": "stable example id"})}
        if "question" in self.coords:
            coords["question"] = ("example", _strings(self.coords["question"]))
        if "step_name" in self.coords:
            coords["step"] = ("step", np.arange(len(self.coords["step_name"])),
                              {"description": STEP_DOC})
            coords["step_name"] = ("step", _strings(self.coords["step_name"]))
        if "layer" in self.coords:
            coords["layer"] = ("layer", np.asarray(self.coords["layer"], dtype=np.int64),
                               {"description": LAYER_DOC})
        if "position" in self.sizes:
            coords["position"] = ("position", np.arange(self.sizes["position"]),
                                  {"description": POSITION_DOC})
            for name in ("source_token", "source_kind"):
                if name in self.coords:
                    coords[name] = (("example", "position"),
                                    _string_table(self.coords[name], self.sizes["position"], name),
                                    {"description": SOURCE_DOC[name]})
        if "cot" in self.coords:
            coords["cot"] = ("example", _strings(self.coords["cot"]),
                             {"description": "reference chain of thought (<<a op b=c>> annotations)"})
        for dim in ("block", "attention_head"):
            if dim in self.sizes:
                coords[dim] = (dim, np.arange(self.sizes[dim]))
        if "k" in self.sizes:
            coords["k"] = ("k", np.arange(self.sizes["k"]))
        if "kv" in self.variables:
            coords["kv_part"] = ("kv_part", _strings(KV_NAMES))
        return xr.Dataset(data_vars, coords=coords, attrs=self.provenance())

    def _chunks(self, name: str) -> tuple[int, ...]:
        """The unit one `write()` fills: `chunk` examples × everything else (a shard where sharded)."""
        dims = VARIABLES[name].dims
        shape = self.shape(name)
        return tuple(min(self.chunk, n) if d == "example" else (1 if d == "layer" and name == "kv"
                                                                  else n)
                     for d, n in zip(dims, shape, strict=True))

    def _inner_chunks(self, name: str) -> tuple[int, ...] | None:
        """Read units inside each shard of the big per-step variables (`hidden`, `latent_input`):
        one step × one layer × `chunk` examples, so the analyses' slices (one step/layer × all
        examples, one example × all steps) read only what they need, while a batch still writes
        one file per variable. None: not sharded (other variables, or batches under
        `SHARD_MIN_BYTES`).
        """
        if name not in SHARDED:
            return None
        dims = VARIABLES[name].dims
        inner = tuple(1 if d in ("step", "layer") else n for d, n in zip(dims, self._chunks(name), strict=True))
        itemsize = 2 if self.dtype == "float16" else 4
        return inner if itemsize * int(np.prod(inner)) >= SHARD_MIN_BYTES else None

    def _create_template(self) -> None:
        from zarr.codecs import BloscCodec, ZstdCodec

        ds = self.template()
        codec = {
            "blosc": [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")],
            "zstd": [ZstdCodec(level=1)],
            "none": None,
        }[self.compression]
        encoding = {name: {"chunks": self._chunks(name), "compressors": codec}
                    for name in self.all_variables}
        for name in self.all_variables:
            inner = self._inner_chunks(name)
            if inner is not None:
                encoding[name].update(chunks=inner, shards=self._chunks(name))
        for name in self.all_variables:
            if VARIABLES[name].kind == "str":  # variable-length UTF-8: no byte compressor
                encoding[name]["compressors"] = None
            if VARIABLES[name].kind == "int32":
                encoding[name]["fill_value"] = VARIABLES[name].fill_value(self.pad_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(self.path, mode="a", compute=False, zarr_format=3, consolidated=True,
                       encoding=encoding)

    def provenance(self) -> dict[str, Any]:
        """Group attributes: schema version, what was captured, config, versions, time."""
        attrs: dict[str, Any] = {
            "format": STORE_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "variables": list(self.variables),
            "dtype": self.dtype,
            "num_examples": self.num_examples,
        }
        for key in PROMOTED_CONFIG_KEYS:
            attrs[key] = self.config.get(key)
        attrs["layers"] = self.coords.get("layer")
        attrs["num_layers"] = self.num_layers
        attrs["layer_convention"] = LAYER_DOC
        attrs["step_convention"] = STEP_DOC
        attrs["pad_id"] = self.pad_id
        attrs["chunk"] = self.chunk
        attrs["compression"] = self.compression
        attrs["config"] = self.config
        attrs["command"] = self.command
        attrs["versions"] = package_versions()
        attrs["python"] = sys.version.split()[0]
        attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        return attrs


def _strings(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=object)


def _string_table(rows: Sequence[Sequence[str]], width: int, name: str) -> np.ndarray:
    """Ragged rows of strings → an `(example, position)` object array padded with ""."""
    out = np.full((len(rows), width), "", dtype=object)
    for i, row in enumerate(rows):
        if len(row) > width:
            raise SchemaError(f"coords[{name!r}] row {i} has {len(row)} positions; the store's "
                              f"width is {width}")
        out[i, : len(row)] = row
    return out



def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a capture (None if not installed)."""
    out: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
