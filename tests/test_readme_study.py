"""The README's skeleton of a new study runs as written: its `analyses/` module (the study template)
and its `runs/` file, on the shipped tiny CODI, into results.json and report.md."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def skeleton() -> dict[str, str]:
    """`{"analyses/my_study.py": source, "runs/my_study.py": source}` from the README's code blocks."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### A new study"):]
    blocks = re.findall(r"```python\n(# (\S+): .*?)```", section, flags=re.S)
    return {path: code for code, path in blocks}


@pytest.fixture
def my_study(tmp_path, monkeypatch):
    import analyses
    import runs

    files = skeleton()
    assert set(files) == {"analyses/my_study.py", "runs/my_study.py"}
    for path, code in files.items():
        target = tmp_path / path
        target.parent.mkdir(exist_ok=True)
        target.write_text(code)
    monkeypatch.setattr(analyses, "__path__", [*analyses.__path__, str(tmp_path / "analyses")])
    monkeypatch.setattr(runs, "__path__", [*runs.__path__, str(tmp_path / "runs")])
    yield files
    for name in ("analyses.my_study", "runs.my_study"):
        sys.modules.pop(name, None)


def test_the_readme_study_skeleton_is_short_and_follows_the_template(my_study):
    from analyses import attention, cot_vectors, lens_study, patching, steering
    from analyses import my_study as mine

    lines = sum(len([l for l in code.splitlines() if l.strip()]) for code in my_study.values())
    assert lines <= 60, lines  # about 20 lines each
    for module in (attention, cot_vectors, lens_study, patching, steering, mine):
        for name in ("TITLE", "analyse", "headline", "report_sections", "compare_with_source"):
            assert hasattr(module, name), (module.__name__, name)


def test_the_readme_study_skeleton_runs_on_the_tiny_model(my_study, tmp_path):
    from runs.my_study import demo_config, run

    out = tmp_path / "out"
    results = run(demo_config(), out, progress=False)
    saved = json.loads((out / "results.json").read_text())
    assert saved["headline"] == results["headline"] and saved["headline"][0].startswith("accuracy ")
    assert saved["accuracy"]["n"] == 8 and len(saved["norm"]) == len(saved["steps"]) >= 3
    report = (out / "report.md").read_text()
    assert report.startswith("# My study") and "## Norm per step" in report and "## Compared with the source" in report
    from torch_blocker import run_blocked

    done = run_blocked(f"import analyses\nanalyses.__path__.append({str(tmp_path / 'analyses')!r})\n"
                       f"from analyses import my_study\nprint(my_study.analyse({str(out / 'store.zarr')!r}, None)['norm'])\n")
    assert done.returncode == 0 and json.loads(done.stdout) == pytest.approx(saved["norm"]), done.stderr[-2000:]
