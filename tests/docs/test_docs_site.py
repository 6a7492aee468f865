"""The documentation site builds with warnings as errors (`mkdocs build --strict`), API reference included.

Needs the `docs` extra: skipped without it; `.ci/docs` installs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("mkdocs_jupyter")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("index.html", "gotchas/index.html", "checkpoints/index.html", "reference/tracing/index.html",
                 "tutorials/01_quickstart/index.html", "changelog/index.html"):
        assert (site / page).is_file(), page
    api = (site / "reference" / "loading" / "index.html").read_text()
    assert "load_model" in api                                      # generated from the docstrings
    tutorial = (site / "tutorials" / "01_quickstart" / "index.html").read_text()
    assert "data:image/png;base64" in tutorial                      # the notebook's figures are rendered
    assert "Unreleased" in (site / "changelog" / "index.html").read_text()
