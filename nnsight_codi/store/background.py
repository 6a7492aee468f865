"""`BackgroundStoreWriter`: a `StoreWriter` whose writes overlap with the next batch's compute.

`write()` validates and converts the batch in the caller's thread (so a bad batch fails at once,
as with `StoreWriter`), then hands it to one writer thread through a bounded queue and returns;
the thread writes the arrays and then records the batch in the manifest, exactly as
`StoreWriter.write` does. At most `max_pending` batches wait, so memory stays bounded by the batch.
The resume guarantees are unchanged: the manifest lists a batch only after its data is on disk, so
a process killed at any moment, or a writer thread that fails, leaves every example either
complete or pending, never half-recorded nor recorded twice. A failure in the thread is raised by
the next `write()`, `flush()` or on leaving the `with` block; batches queued behind it are not
written (they stay pending and a resumed capture redoes them).

Example:
    >>> import numpy as np, tempfile
    >>> path = tempfile.mkdtemp() + "/run.zarr"
    >>> w = BackgroundStoreWriter(path, variables=["correct"], coords={"example": ["a", "b", "c"]},
    ...                           config={"model_id": "tiny"}, chunk=2)
    >>> with w:
    ...     for idx in w.batches():
    ...         w.write(idx, {"correct": np.ones(len(idx), bool)})   # returns before the data is written
    ...     w.num_completed                                          # waits for queued batches
    3
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnsight_codi.store.manifest import Manifest
from nnsight_codi.store.store_errors import StoreError
from nnsight_codi.store.writer import StoreWriter

_STOP = object()


class BackgroundStoreWriter(StoreWriter):
    """`StoreWriter` with a writer thread (same constructor, plus `max_pending`).

    Args:
        max_pending: batches that may wait for the writer thread before `write()` blocks.
    """

    def __init__(self, *args: Any, max_pending: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._queued: set[int] = set()
        self._guard = threading.Lock()

    # ----------------------------------------------------------------- lifecycle
    def open(self) -> BackgroundStoreWriter:
        super().open()
        self._error = None
        self._queued = set()
        self._queue = queue.Queue(maxsize=self.max_pending)
        self._thread = threading.Thread(target=self._run, name=f"store-writer:{self.path.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            self._stop()  # write what was queued (complete computations) before releasing the lock
        finally:
            self.close()
        if exc_type is None:
            self._raise_error()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._stop()
        super().close()

    @property
    def _open_queue(self) -> queue.Queue:
        """The queue of batches to write, which exists from `open()` on."""
        assert self._queue is not None, "the writer is not open"
        return self._queue

    def _stop(self) -> None:
        if self._thread is None:
            return
        if self._thread.is_alive():
            self._open_queue.put(_STOP)
            self._thread.join()
        self._thread = None

    # ----------------------------------------------------------------- writing
    def write(self, indices: Sequence[int] | np.ndarray, data: Mapping[str, Any]) -> None:
        """Validate now, write in the background (blocks only while `max_pending` batches wait)."""
        self._raise_error()
        if self._thread is None:
            raise StoreError("BackgroundStoreWriter is not open; use `with writer:` or writer.open()")
        batch = self.check_batch(indices, data)
        if batch is None:
            return
        with self._guard:
            self._queued.update(int(i) for i in batch[0])
        while True:  # wake up now and then, so a dead writer thread cannot block the caller
            try:
                self._open_queue.put(batch, timeout=0.5)
                return
            except queue.Full:
                self._raise_error()

    def flush(self) -> None:
        """Wait until every queued batch is written (and in the manifest); raise a writer failure."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._queue.join()
        self._raise_error()

    def _unavailable_indices(self, m: Manifest) -> np.ndarray:
        with self._guard:
            queued = np.fromiter(self._queued, dtype=np.int64, count=len(self._queued))
        return np.concatenate([m.completed_indices(), queued])

    def _run(self) -> None:
        while True:
            item = self._open_queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:  # after a failure, drop what is queued: it stays pending
                    try:
                        self.commit(*item)
                    except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                        self._error = e
                with self._guard:
                    self._queued.difference_update(int(i) for i in item[0])
            finally:
                self._open_queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise StoreError(f"the background store writer failed: {self._error!r}; completed batches are "
                             f"in {self.path}'s manifest, run again to resume") from self._error

    # ----------------------------------------------------------------- progress (after queued writes)
    def pending(self) -> np.ndarray:
        self.flush()
        return super().pending()

    @property
    def num_completed(self) -> int:
        self.flush()
        return super().num_completed
