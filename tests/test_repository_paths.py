"""Nothing the project ships or runs names a path outside the repository, and runs/ holds scripts only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("nnsight_codi", "runs", "analyses", "tests", "results", "bench", "pyproject.toml")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".json", ".jsonl", ".toml", ".txt", ".jinja", ".cfg", ".ini", ".html",
            ".js", ".css"}
# A sibling `shared/` folder, the design notes kept beside the checkout, or any absolute home of a checkout.
OUTSIDE = re.compile(r"\.\./shared|shared/data/|DESIGN\.md|/work/|/home/[a-z]|/Users/[A-Za-z]")
# The two path checks themselves (this one, and the docs' one) hold the patterns they look for.
CHECKERS = {Path(__file__).resolve(), ROOT / "tests" / "docs" / "test_docs_paths.py"}


def _files():
    for top in SCANNED:
        path = ROOT / top
        candidates = [path] if path.is_file() else path.rglob("*")
        for f in candidates:
            if f.is_file() and f.suffix in SUFFIXES and f.resolve() not in CHECKERS and ".zarr" not in f.parts[-3:-1] \
                    and "__pycache__" not in f.parts:
                yield f


def test_no_file_names_a_path_outside_the_repository():
    hits = []
    for f in _files():
        text = f.read_text(errors="replace")
        for m in OUTSIDE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append(f"{f.relative_to(ROOT)}:{line}: {m.group(0)}")
    assert not hits, "paths outside the repository:\n" + "\n".join(hits[:40])


def test_the_scan_finds_what_it_looks_for(tmp_path):
    for bad in ("../shared/data/gsm8k/test.jsonl", "see DESIGN.md", "/work/main/out", "/home/alice/x"):
        assert OUTSIDE.search(bad), bad
    assert not OUTSIDE.search("nnsight_codi/assets/gsm8k/test.jsonl.gz results/lens_1000/report.md")


def test_runs_holds_scripts_and_results_hold_outputs():
    entries = [p for p in (ROOT / "runs").iterdir() if p.name != "__pycache__"]
    assert entries and all(p.is_file() and p.suffix == ".py" for p in entries), \
        [p.name for p in entries if not (p.is_file() and p.suffix == ".py")]
    assert (ROOT / "results" / "index.md").is_file()


def test_results_index_is_up_to_date():
    done = subprocess.run([sys.executable, str(ROOT / "runs" / "results_index.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    index = (ROOT / "results" / "index.md").read_text()
    for d in (ROOT / "results").iterdir():
        if d.is_dir() and ((d / "results.json").is_file() or (d / "report.json").is_file()):
            assert f"| {d.name} |" in index, d.name
    # the moved results name the real model: the old `tiny-instruct` of cot_vectors_v1_500 was v1
    assert "| cot_vectors_v1_500 | tiny-instruct-v1 |" in index and "| cot_vectors_v3 | tiny-instruct-v3 |" in index
