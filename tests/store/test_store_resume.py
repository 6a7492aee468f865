"""Killed captures resume: every example exactly once, values as in an uninterrupted run."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import store_testlib as lib

from nnsight_codi.store import Manifest, StoreWriter, open_store


def assert_complete_and_equal(path, reference) -> None:
    m = Manifest.load(path)
    assert m.completed == [[0, lib.N]] and m.initialized
    ds = open_store(path)
    ref = open_store(reference)
    assert ds.sizes["example"] == lib.N
    assert list(ds.example.values) == list(ref.example.values)
    assert bool(ds.complete.all())
    for name in lib.ALL_VARS + ["prompt_length"]:
        np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    lib.write_all(path)
    return path


def test_sigkill_at_several_points_then_resume(tmp_path, reference):
    path = tmp_path / "run.zarr"
    completed: list[int] = []
    # killed after the template exists but before the manifest says so, then mid-batch (hidden
    # written, manifest not), then between batches; each time resumed by a new process
    for point in ("init", "midwrite:2", "after:1"):
        proc = lib.start_writer(path, point)
        lines = lib.read_until(proc, "PAUSE")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        completed += lib.done_indices(lines)
        assert Manifest.load(path).num_completed == len(completed)
    proc = lib.start_writer(path)
    lines = lib.read_until(proc, "finished")
    assert proc.wait(timeout=30) == 0
    completed += lib.done_indices(lines)
    assert sorted(completed) == list(range(lib.N))  # each example written exactly once
    assert_complete_and_equal(path, reference)


def test_sigint_then_resume(tmp_path, reference):
    path = tmp_path / "run.zarr"
    proc = lib.start_writer(path, "midwrite:2")
    first = lib.read_until(proc, "PAUSE")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) != 0
    assert b"KeyboardInterrupt" in proc.stderr.read()
    assert Manifest.load(path).num_completed == lib.CHUNK  # batch 1 done, batch 2 not
    # the lock was released by the interrupted writer: resume in-process
    second = lib.write_all(path)
    assert sorted(lib.done_indices(first) + [i for b in second for i in b]) == list(range(lib.N))
    assert_complete_and_equal(path, reference)


def test_exception_midway_then_resume_and_rerun_does_nothing(tmp_path, reference):
    path = tmp_path / "run.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(path, **lib.writer_kwargs()) as w:
            for n, idx in enumerate(w.batches()):
                if n == 2:
                    raise RuntimeError("boom")
                w.write(idx, lib.batch_data(idx))
    assert Manifest.load(path).num_completed == 2 * lib.CHUNK
    lib.write_all(path)
    assert_complete_and_equal(path, reference)
    before = (path / "manifest.json").read_bytes()
    assert lib.write_all(path) == []  # finished: nothing pending, nothing written
    assert (path / "manifest.json").read_bytes() == before


def test_resume_with_other_chunk_keeps_store_chunking(tmp_path, reference):
    path = tmp_path / "run.zarr"
    with StoreWriter(path, **lib.writer_kwargs()) as w:
        idx = next(w.batches())
        w.write(idx, lib.batch_data(idx))
    lib.write_all(path, chunk=3)  # e.g. a different --batch-size: not a config change
    assert_complete_and_equal(path, reference)
    assert open_store(path).hidden.encoding["chunks"][0] == lib.CHUNK  # stored chunking (dask chunks may merge)


def test_pending_and_batches(tmp_path):
    with StoreWriter(tmp_path / "s.zarr", **lib.writer_kwargs()) as w:
        assert [b.tolist() for b in w.batches()][:2] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        w.write([5, 6], lib.batch_data(np.array([5, 6])))
        assert w.pending().tolist() == [0, 1, 2, 3, 4] + list(range(7, lib.N))
        assert [b.tolist() for b in w.batches()][1] == [4, 7]  # chunk-aligned
        assert w.pending_ids()[:1] == ["ex000"]
        w.write([9, 8], lib.batch_data(np.array([9, 8])))  # any order
        with pytest.raises(Exception, match="already complete"):
            w.write([5], lib.batch_data(np.array([5])))
    ds = open_store(tmp_path / "s.zarr")
    assert ds.example.values.tolist() == ["ex005", "ex006", "ex008", "ex009"]
    np.testing.assert_array_equal(ds.hidden.sel(example="ex009").values,
                                  lib.expected(9, "hidden"))
