"""The background store writer: same store as the synchronous writer; a writer-thread failure or a
SIGKILL mid-write loses no completed example and writes none twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
import store_testlib as lib  # noqa: E402

from nnsight_codi.store import BackgroundStoreWriter, Manifest, StoreError, open_store  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "bg_writer_script.py"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    lib.write_all(path)  # the synchronous StoreWriter
    return path


def assert_equal_to(path, reference) -> None:
    m = Manifest.load(path)
    assert m.completed == [[0, lib.N]]
    ds, ref = open_store(path), open_store(reference)
    assert list(ds.example.values) == list(ref.example.values)
    assert bool(ds.complete.all())
    for name in lib.ALL_VARS + ["prompt_length"]:
        np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)


def test_background_store_equals_synchronous_store(tmp_path, reference):
    path = tmp_path / "bg.zarr"
    with BackgroundStoreWriter(path, max_pending=1, **lib.writer_kwargs()) as w:
        for idx in w.batches():
            w.write(idx, lib.batch_data(idx))
        assert w.num_completed == lib.N
    assert_equal_to(path, reference)


def test_bad_batch_fails_in_the_callers_thread_and_queued_duplicates_are_refused(tmp_path):
    with BackgroundStoreWriter(tmp_path / "s.zarr", **lib.writer_kwargs()) as w:
        idx = next(w.batches())
        with pytest.raises(Exception, match="missing variable"):
            w.write(idx, {"hidden": lib.batch_data(idx)["hidden"]})
        w.write(idx, lib.batch_data(idx))
        with pytest.raises(StoreError, match="already complete"):  # queued or written: either way refused
            w.write(idx[:1], lib.batch_data(idx[:1]))
    assert Manifest.load(tmp_path / "s.zarr").completed == [[0, len(idx)]]


def test_writer_thread_failure_loses_nothing_and_resume_duplicates_nothing(tmp_path, reference):
    path = tmp_path / "crash.zarr"
    committed: list[list[int]] = []

    class Failing(BackgroundStoreWriter):
        def commit(self, idx, arrays):
            if len(committed) == 2:
                self._write_array("hidden", idx, arrays["hidden"])  # half a batch on disk, then the crash
                raise OSError("disk on fire")
            super().commit(idx, arrays)
            committed.append(idx.tolist())

    with pytest.raises(StoreError, match="disk on fire"):
        with Failing(path, max_pending=2, **lib.writer_kwargs()) as w:
            for idx in w.batches():
                w.write(idx, lib.batch_data(idx))
    first = [i for batch in committed for i in batch]
    assert Manifest.load(path).completed_indices().tolist() == first == list(range(2 * lib.CHUNK))
    second = lib.write_all(path)  # resume: only the pending examples are written
    assert sorted(first + [i for b in second for i in b]) == list(range(lib.N))  # each exactly once
    assert_equal_to(path, reference)


def _start(path, pause_at=None):
    cmd = [sys.executable, str(SCRIPT), str(path)] + (["--pause-at", pause_at] if pause_at else [])
    env = dict(os.environ, PYTHONPATH=str(lib.REPO), PYTHONUNBUFFERED="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_sigkill_mid_background_write_then_resume(tmp_path, reference):
    path = tmp_path / "killed.zarr"
    done: list[int] = []
    for point in ("midwrite:1", "midwrite:2"):  # killed while the thread writes a batch, later batches queued
        proc = _start(path, point)
        lines = lib.read_until(proc, "PAUSE")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        done += lib.done_indices(lines)
        assert Manifest.load(path).completed_indices().tolist() == sorted(done)
    assert len(done) == lib.CHUNK  # the first run committed nothing, the second one batch
    proc = _start(path)
    lines = lib.read_until(proc, "finished")
    assert proc.wait(timeout=30) == 0
    done += lib.done_indices(lines)
    assert sorted(done) == list(range(lib.N))  # each example committed exactly once over the three runs
    assert_equal_to(path, reference)
