"""The tutorials: each `docs/tutorials/NN_name.py` is paired with its committed, executed `.ipynb`, and
runs from scratch in a fresh kernel with no error, no warning and at least one figure.

Needs the `docs` extra (jupytext, nbclient, ipykernel): skipped without it; `.ci/docs` installs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))

from execute_tutorials import execute, read_notebook, tutorial_sources  # noqa: E402

SOURCES = tutorial_sources()
EXPECTED = ["01_quickstart", "02_capture_xarray", "03_lenses", "04_steering_sweeps", "05_cot_vectors",
            "06_remote", "07_new_study"]


def sources_of(nb) -> list[tuple[str, str]]:
    """(cell type, source) of every cell."""
    return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for c in (nb["cells"] if isinstance(nb, dict) else nb.cells)]


def problems(nb) -> list[str]:
    """Error outputs and stderr streams (warnings) of an executed notebook."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                found.append(f"cell {i}: {out['ename']}: {out['evalue']}")
            elif out["output_type"] == "stream" and out["name"] == "stderr":
                found.append(f"cell {i} stderr: {''.join(out['text'])[:300]}")
    return found


def figures(nb) -> int:
    """PNG outputs of an executed notebook."""
    return sum("image/png" in out.get("data", {}) for cell in nb["cells"] for out in cell.get("outputs", []))


def test_the_seven_tutorials_exist_in_order():
    assert [p.stem for p in SOURCES] == EXPECTED


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_the_committed_notebook_is_the_executed_pair_of_its_script(source):
    pytest.importorskip("jupytext")
    committed = json.loads(source.with_suffix(".ipynb").read_text())
    assert sources_of(committed) == sources_of(read_notebook(source)), \
        f"{source.name} and its .ipynb differ: run `python docs/execute_tutorials.py {source.stem[:2]} --write`"
    assert committed["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
    code = [c for c in committed["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "not executed"
    assert not problems(committed)
    assert figures(committed) >= 1


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_the_tutorial_runs_from_scratch(source):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb, seconds = execute(source)
    executed = json.loads(json.dumps(nb))
    assert not problems(executed)
    assert figures(executed) >= 1
    print(f"{source.name}: {seconds:.1f} s")
