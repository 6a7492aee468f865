"""Run the tutorials: each `docs/tutorials/NN_name.py` (jupytext percent format) as a notebook.

`python docs/execute_tutorials.py` executes every tutorial in a fresh kernel and reports each one's
time; `--write` also stores the executed notebook as the paired `NN_name.ipynb` (what the docs site
renders: commit it with the `.py`); names select tutorials (`01 03`). The kernel runs in a
temporary working directory, so the figures the tutorials save under `out/` land there, not in
the checkout. `tests/docs/test_tutorials.py` runs the same function.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parent / "tutorials"
# tqdm.auto warns in a kernel without ipywidgets ("IProgress not found"); the tutorials show no progress
# bars, so the rendered pages are spared that line (a user's own Jupyter shows it, or not, as it will).
QUIET_KERNEL = "--IPKernelApp.exec_lines=['import warnings; warnings.filterwarnings(\"ignore\", message=\"IProgress not found\")']"
ROOT = TUTORIALS.parents[1]


def tutorial_sources(names: list[str] | None = None) -> list[Path]:
    """The tutorials' percent-format sources, in order (`names`: prefixes such as `01`)."""
    found = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
    if names:
        found = [p for p in found if any(p.name.startswith(n) for n in names)]
    return found


def read_notebook(source: Path):
    """The notebook that jupytext reads from a percent-format `source` (no outputs)."""
    import jupytext

    return jupytext.read(source)


def execute(source: Path, timeout: int = 600):
    """Execute the tutorial `source` in a fresh kernel; return `(notebook, seconds)`.

    The kernel's working directory is a new temporary directory and its `PYTHONPATH` starts with
    the checkout root, so the tutorial imports this checkout's `nnsight_codi` even when the package
    is not installed. A failing cell raises `nbclient.exceptions.CellExecutionError`.
    """
    from nbclient import NotebookClient

    nb = read_notebook(source)
    # The kernel inherits this process's environment: this checkout first on the path, and the inline
    # backend whatever MPLBACKEND says here (with Agg, plt.show() would show nothing and warn).
    kernel_env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
                  "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        with tempfile.TemporaryDirectory(prefix="nnsight-codi-tutorial-") as cwd:
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}},
                                    extra_arguments=[QUIET_KERNEL])
            start = time.perf_counter()
            client.execute()
            seconds = time.perf_counter() - start
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, seconds


def write_paired(source: Path, nb) -> Path:
    """Store the executed `nb` as the `.ipynb` paired with `source`."""
    import jupytext

    target = source.with_suffix(".ipynb")
    jupytext.write(nb, target, fmt="ipynb")
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line: execute (and with `--write` store) the tutorials; print one line per tutorial."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorial prefixes, e.g. 01 03 (default: all)")
    parser.add_argument("--write", action="store_true", help="store each executed notebook as its .ipynb")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    sources = tutorial_sources(args.names)
    if not sources:
        print(f"no tutorial matches {args.names}", file=sys.stderr)
        return 2
    for source in sources:
        nb, seconds = execute(source, args.timeout)
        where = f" -> {write_paired(source, nb).name}" if args.write else ""
        print(f"{source.name}: {seconds:.1f} s{where}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
