"""Writer subprocess for the background-writer kill tests (store_testlib's capture, written by
`BackgroundStoreWriter`).

    python bg_writer_script.py STORE [--pause-at midwrite:K]

Prints `queued i,j,…` when `write()` returns and `done i,j,…` from the writer thread once a batch
is in the manifest; at `midwrite:K` the writer thread prints `PAUSE` after writing batch K's
`hidden` (before its manifest entry) and sleeps, waiting to be killed, while the main thread
keeps queueing.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
import store_testlib as lib  # noqa: E402

from nnsight_codi.store import BackgroundStoreWriter  # noqa: E402

_LOCK = threading.Lock()


def say(line: str) -> None:
    """One whole line at a time: the main thread and the writer thread both report."""
    with _LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--pause-at")
    a = ap.parse_args()

    class Pausing(BackgroundStoreWriter):
        writes = 0

        def _write_array(self, name, idx, values):
            super()._write_array(name, idx, values)
            if name == "hidden":
                Pausing.writes += 1
                if a.pause_at == f"midwrite:{Pausing.writes}":
                    say("PAUSE")
                    time.sleep(120)

        def commit(self, idx, arrays):
            super().commit(idx, arrays)
            say("done " + ",".join(map(str, idx.tolist())))

    with Pausing(a.path, max_pending=2, **lib.writer_kwargs()) as w:
        for idx in w.batches():
            w.write(idx, lib.batch_data(idx))
            say("queued " + ",".join(map(str, idx.tolist())))
    say("finished")


if __name__ == "__main__":
    main()
