"""The README and the docs name no path outside the repository, and every relative link in them resolves
to a file of the repository (torch-free, fast: part of the main suite)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# A sibling `shared/` folder, design notes kept beside a checkout, a home or work directory, a
# virtual environment's packages, a temporary directory: none of these exist in a clone.
OUTSIDE = re.compile(r"\.\./shared|shared/data/|DESIGN\.md|/work/|/home/[a-z]|/Users/[A-Za-z]|site-packages|/tmp/"
                     r"|/root/|/usr/lib")
LINK = re.compile(r"\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")




def documents() -> list[Path]:
    """Every text file of the docs, plus the README, the changelog and the site's config."""
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "mkdocs.yml"]
    files += [p for p in DOCS.rglob("*") if p.is_file() and p.suffix in (".md", ".py", ".yml", ".ipynb")
              and "__pycache__" not in p.parts]
    return files


def readable_text(path: Path) -> str:
    """The file's text; for a notebook, its sources and text outputs (not the base64 images)."""
    if path.suffix != ".ipynb":
        return path.read_text()
    nb = json.loads(path.read_text())
    parts = []
    for cell in nb["cells"]:
        parts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            for mime, data in out.get("data", {}).items():
                if mime.startswith("text/"):
                    parts.append("".join(data))
            parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def test_no_document_names_a_path_outside_the_repository():
    hits = []
    for path in documents():
        text = readable_text(path)
        for m in OUTSIDE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)}")
    assert not hits, "paths outside the repository:\n" + "\n".join(hits[:40])


def test_every_relative_link_resolves_inside_the_repository():
    bad = []
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")]:
        for m in LINK.finditer(path.read_text()):
            target = (m.group(1) or m.group(2)).split("#")[0]
            if not target or re.match(r"[a-z]+:", target):        # an anchor in the page, or http(s)/mailto
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                bad.append(f"{path.relative_to(ROOT)}: {target}")
    assert not bad, "links that leave the repository or lead nowhere:\n" + "\n".join(bad)


def test_the_scan_finds_what_it_looks_for():
    for bad in ("../shared/data/gsm8k/test.jsonl", "see DESIGN.md", "/work/venv/lib", "/home/alice/x",
                "lib/python3.11/site-packages/tqdm", "/tmp/nnsight-codi-tutorial-x/out"):
        assert OUTSIDE.search(bad), bad
    assert not OUTSIDE.search("docs/img/study_lens.png results/lens_1000/report.md out/tutorials/01")
    assert LINK.findall('[a](docs/x.md) <img src="docs/img/y.png" width="1">') == [("docs/x.md", ""),
                                                                                  ("", "docs/img/y.png")]


def test_the_readme_is_a_landing_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert not re.search(r"(?<![\w/])#\d+\b", text), "internal issue numbers"
    assert "the seed" not in text.lower()


def test_the_api_reference_shows_doctests_as_code():
    import doctest
    import importlib.util

    spec = importlib.util.spec_from_file_location("griffe_doctests", DOCS / "griffe_doctests.py")
    if importlib.util.find_spec("griffe") is None:
        import pytest

        pytest.skip("griffe (the docs extra) is not installed")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert doctest.testmod(module).failed == 0
    fenced = module.fence_doctests("Text [a][b].\n\nExample:\n    >>> [s for s in x][:2]\n    [1]\n\nAfter.")
    assert "```pycon\n    >>> [s for s in x][:2]\n    [1]\n    ```" in fenced and fenced.startswith("Text [a][b].")
