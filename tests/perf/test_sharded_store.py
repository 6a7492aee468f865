"""Sharded `hidden`/`latent_input` (big batches): same values as the unsharded store, one shard file
per batch, and the analyses' slices read back exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
import store_testlib as lib  # noqa: E402

import nnsight_codi.store.layout as layout_module  # noqa: E402
from nnsight_codi.store import BackgroundStoreWriter, open_store  # noqa: E402


def test_sharded_store_equals_unsharded_and_slices_read_back(tmp_path, monkeypatch):
    plain = tmp_path / "plain.zarr"
    lib.write_all(plain)  # the test's batches are far under SHARD_MIN_BYTES: not sharded
    monkeypatch.setattr(layout_module, "SHARD_MIN_BYTES", 0)  # shard even these tiny batches
    path = tmp_path / "sharded.zarr"
    with BackgroundStoreWriter(path, **lib.writer_kwargs()) as w:
        for idx in w.batches():
            w.write(idx, lib.batch_data(idx))
    ds, ref = open_store(path), open_store(plain)
    assert ds.hidden.encoding.get("shards") and not ref.hidden.encoding.get("shards")
    assert ds.hidden.encoding["chunks"] == (lib.CHUNK, 1, 1, lib.D)
    assert ds.hidden.encoding["shards"] == (lib.CHUNK, lib.K + 2, lib.L + 1, lib.D)
    assert ds.latent_input.encoding["chunks"] == (lib.CHUNK, 1, lib.D)
    batches = -(-lib.N // lib.CHUNK)
    assert len([f for f in (path / "hidden" / "c").rglob("*") if f.is_file()]) == batches  # one file per batch
    assert ds.hidden.chunks[0] == (lib.N,)  # dask: one chunk along example (merged shards)
    for name in lib.ALL_VARS + ["prompt_length"]:
        np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)
    expected = np.stack([lib.expected(i, "hidden") for i in range(lib.N)])
    np.testing.assert_array_equal(ds.hidden.sel(step=1, layer=2).values, expected[:, 1, 2])
    np.testing.assert_array_equal(ds.hidden.isel(example=9).values, expected[9])
    np.testing.assert_array_equal(open_store(path, chunks={}).hidden.values, expected)  # as stored


def test_small_batches_are_not_sharded(tmp_path):
    with BackgroundStoreWriter(tmp_path / "s.zarr", **lib.writer_kwargs()) as w:
        idx = next(w.batches())
        w.write(idx, lib.batch_data(idx))
    assert not open_store(tmp_path / "s.zarr").hidden.encoding.get("shards")
