"""Shared helpers for the store tests; also a writer script that tests kill and resume.

As a script: `python store_testlib.py STORE [--pause-at init|midwrite:K|after:K]` writes the
deterministic capture below into STORE (resuming if it exists), printing `done i,j,…` after each
batch; at the pause point it prints `PAUSE` and sleeps, waiting to be killed.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

N, K, L, D, P, KTOP, H, HD = 14, 2, 3, 5, 11, 3, 2, 2
CHUNK = 4
ALL_VARS = ["hidden", "latent_input", "kv", "attention", "lens_top_ids", "lens_top_probs",
            "answer_pred", "answer_gold", "correct", "prompt_ids"]
SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parents[2]


def writer_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of the test capture's StoreWriter."""
    kw: dict[str, Any] = dict(
        variables=list(ALL_VARS),
        coords=dict(example=[f"ex{i:03d}" for i in range(N)],
                    question=[f"question {i}?" for i in range(N)],
                    layer=list(range(L + 1))),
        sizes=dict(dim=D, position=P, k=KTOP, head=H, head_dim=HD),
        config=dict(model_id="tiny-test", model_revision="r1", num_latents=K, dataset="synth",
                    limit=N, interventions=[]),
        num_layers=L, dtype="float32", chunk=CHUNK, command="test")
    kw.update(overrides)
    return kw


def example_data(i: int) -> dict[str, np.ndarray]:
    """Deterministic values of example `i` (prompt length varies with i)."""
    rng = np.random.default_rng(1000 + i)
    plen = 3 + i % 4
    width = plen + K + 2  # prompt + bot + latents + eot
    return {
        "hidden": rng.normal(size=(K + 2, L + 1, D)).astype(np.float32),
        "latent_input": rng.normal(size=(K + 2, D)).astype(np.float32),
        "kv": rng.normal(size=(L, 2, H, width, HD)).astype(np.float32),  # no layer 0
        "attention": rng.random((K + 2, width)).astype(np.float32),
        "lens_top_ids": rng.integers(0, 500, (K + 2, L + 1, KTOP)),
        "lens_top_probs": rng.random((K + 2, L + 1, KTOP)).astype(np.float32),
        "answer_pred": np.float64(i % 5),
        "answer_gold": np.float64(i % 3),
        "correct": np.bool_(i % 5 == i % 3),
        "prompt_ids": rng.integers(0, 100, plen),
        "prompt_length": np.int64(plen),
    }


def batch_data(indices: np.ndarray) -> dict[str, np.ndarray]:
    """Stack examples into a batch, right-padding position dims to the batch's widest."""
    rows = [example_data(int(i)) for i in indices]
    out = {}
    for name in rows[0]:
        arrs = [np.asarray(r[name]) for r in rows]
        if arrs[0].ndim and name in ("kv", "attention", "prompt_ids"):
            w = max(a.shape[-2 if name == "kv" else -1] for a in arrs)
            fill = -1 if name == "prompt_ids" else np.nan
            padded = []
            for a in arrs:
                ax = a.ndim - 2 if name == "kv" else a.ndim - 1
                pad = [(0, 0)] * a.ndim
                pad[ax] = (0, w - a.shape[ax])
                padded.append(np.pad(a, pad, constant_values=fill))
            arrs = padded
        out[name] = np.stack(arrs)
    return out


def expected(i: int, name: str) -> np.ndarray:
    """What the store must hold for example `i`, variable `name` (padded to the store)."""
    x = np.asarray(example_data(i)[name])
    if name == "kv":
        x = np.concatenate([np.full((1,) + x.shape[1:], np.nan, np.float32), x])
        return np.pad(x, [(0, 0)] * 3 + [(0, P - x.shape[3]), (0, 0)], constant_values=np.nan)
    if name == "attention":
        return np.pad(x, [(0, 0), (0, P - x.shape[1])], constant_values=np.nan)
    if name == "prompt_ids":
        return np.pad(x, (0, P - x.shape[0]), constant_values=-1)
    return x


def write_all(path: str | os.PathLike, pause_at: str | None = None, **overrides: Any) -> list:
    """Write every pending example; return the batches written. Used in-process and as script."""
    from nnsight_codi.store import StoreWriter

    class PausingWriter(StoreWriter):
        writes = 0

        def _create_template(self) -> None:
            super()._create_template()
            if pause_at == "init":
                _pause()

        def _write_array(self, name, idx, values) -> None:
            super()._write_array(name, idx, values)
            if name == "hidden":
                PausingWriter.writes += 1
                if pause_at == f"midwrite:{PausingWriter.writes}":
                    _pause()

    done = []
    with PausingWriter(path, **writer_kwargs(**overrides)) as w:
        print("opened", flush=True)
        for idx in w.batches():
            w.write(idx, batch_data(idx))
            done.append(idx.tolist())
            print("done " + ",".join(map(str, idx.tolist())), flush=True)
            if pause_at == f"after:{len(done)}":
                _pause()
    print("finished", flush=True)
    return done


def _pause() -> None:
    print("PAUSE", flush=True)
    time.sleep(120)


def start_writer(path: str | os.PathLike, pause_at: str | None = None) -> subprocess.Popen:
    """Start this file as a writer subprocess (stdout piped, unbuffered)."""
    cmd = [sys.executable, str(SCRIPT), str(path)]
    if pause_at:
        cmd += ["--pause-at", pause_at]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    # SIGINT back to its default in the child: a test run started as a background job (`cmd &`)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def read_until(proc: subprocess.Popen, marker: str, timeout: float = 60) -> list[str]:
    """Read the subprocess's stdout lines until one equals `marker` (or it exits)."""
    buf, lines = b"", []
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                lines.append(line.decode())
                if lines[-1] == marker:
                    return lines
        elif proc.poll() is not None and not ready:
            break
    err = proc.stderr.read().decode() if proc.poll() is not None else ""
    raise AssertionError(f"no {marker!r} from writer; got {lines}; stderr: {err[-2000:]}")


def done_indices(lines: list[str]) -> list[int]:
    """Example indices reported complete in a writer's output."""
    return [int(x) for line in lines if line.startswith("done ") for x in line[5:].split(",")]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--pause-at")
    a = ap.parse_args()
    write_all(a.path, a.pause_at)
