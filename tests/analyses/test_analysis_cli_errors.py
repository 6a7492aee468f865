"""Every `analyses/` module's command line: a bad path is one line on stderr and exit status 2."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import analyses

# `<study>_report` modules are an analysis's report sections (rendered by `reporting.write_study`), not commands.
MODULES = sorted(m.name for m in pkgutil.iter_modules(analyses.__path__)
                 if not m.name.startswith("_") and not m.name.endswith("_report"))


def test_every_analysis_module_has_a_main():
    assert len(MODULES) >= 6
    for name in MODULES:
        assert callable(importlib.import_module(f"analyses.{name}").main), name


@pytest.mark.parametrize("name", MODULES)
def test_missing_input_is_one_line(name, tmp_path, capsys):
    module = importlib.import_module(f"analyses.{name}")
    assert module.main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"analyses.{name}: error: "), captured.err
    assert str(tmp_path / "missing") in lines[0] and "Traceback" not in captured.err
    if name == "lens_study":  # neither a study directory nor a store
        assert "neither" in lines[0]
