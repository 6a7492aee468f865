"""Activation store: stream captures to zarr (resumable), read them back as labeled xarray.

Example (see `StoreWriter` for a runnable one)::

    with StoreWriter("out.zarr", variables=["hidden"], coords=coords, sizes=sizes) as w:
        for idx in w.batches():
            w.write(idx, {"hidden": hidden_batch})
    ds = open_store("out.zarr")
"""

from nnsight_codi.store.background import BackgroundStoreWriter
from nnsight_codi.store.manifest import Manifest
from nnsight_codi.store.positions import left_align, pad_counts_from_mask
from nnsight_codi.store.reader import (
    concat_conditions,
    concat_stores,
    open_store,
    select_correct,
    select_steps,
)
from nnsight_codi.store.schema import (
    DEFAULT_VARIABLES,
    REQUESTABLE,
    SCHEMA_VERSION,
    VARIABLES,
    parse_variables,
    step_names,
    validate_layers,
    validate_variables,
)
from nnsight_codi.store.store_errors import (
    ConfigMismatchError,
    ManifestError,
    SchemaError,
    SchemaVersionError,
    StoreError,
    StoreLockedError,
)
from nnsight_codi.store.summary import store_summary
from nnsight_codi.store.writer import StoreWriter

__all__ = [
    "ConfigMismatchError", "ManifestError", "SchemaError", "SchemaVersionError", "StoreError",
    "StoreLockedError", "Manifest", "left_align", "pad_counts_from_mask", "concat_conditions",
    "concat_stores", "open_store", "select_correct", "select_steps", "DEFAULT_VARIABLES",
    "REQUESTABLE", "SCHEMA_VERSION", "VARIABLES", "parse_variables", "step_names",
    "validate_layers", "validate_variables", "store_summary", "StoreWriter", "BackgroundStoreWriter",
]
