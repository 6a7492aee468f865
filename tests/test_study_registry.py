"""The public API to add a study: `register_study` in-process and the `nnsight_codi.studies` entry points."""

from __future__ import annotations

import json
import sys
import textwrap
import types
from dataclasses import dataclass

import pytest

from nnsight_codi import studies
from nnsight_codi.studies import get_study, register_study, run_study, select_studies, unregister_study

OUTSIDE = '''
"""Squares of the first integers."""
from dataclasses import dataclass, asdict
from nnsight_codi.reporting import write_results

@dataclass
class Config:
    n: int = 10

def demo_config():
    return Config(n=3)

def run(config, out, progress=True):
    results = {"config": asdict(config), "squares": [i * i for i in range(config.n)], "headline": ["squares"]}
    write_results(out, results)
    return results
'''


@dataclass
class _Config:
    n: int = 5


def _study(doc: str = "Counting."):
    def run(config, out, progress=True):
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"n": config.n}))
        return {"headline": [f"counted {config.n}"]}
    return types.SimpleNamespace(Config=_Config, demo_config=lambda: _Config(n=2), run=run, __doc__=doc)


@pytest.fixture
def clean_registry():
    yield
    studies._REGISTERED.clear()


def test_a_registered_object_runs_and_joins_all(clean_registry, tmp_path):
    study = register_study("counting", _study(), expected_seconds=2)
    assert study.title == "Counting" and study.expected_seconds == 2
    assert [s.name for s in select_studies("all")][-1] == "counting"
    outcome = run_study(get_study("counting"), tmp_path / "c", progress=False, overrides={"n": 7})
    assert outcome.status == "ok" and outcome.headline == ["counted 7"]
    assert json.loads((tmp_path / "c" / "results.json").read_text()) == {"n": 7}
    unregister_study("counting")
    with pytest.raises(ValueError, match="unknown study"):
        get_study("counting")


def test_names_clashes_and_bad_definitions_are_one_line_errors(clean_registry):
    with pytest.raises(ValueError, match="exists already"):
        register_study("lens", _study())
    with pytest.raises(ValueError, match="reserved"):
        register_study("all", _study())
    with pytest.raises(ValueError, match="lower-case"):
        register_study("My Study", _study())
    with pytest.raises(ValueError, match="no callable demo_config or run"):
        register_study("empty", object())
    replaced = register_study("lens", _study("Mine."), replace=True)
    assert get_study("lens") is replaced and get_study("lens").title == "Mine"


def test_a_module_written_outside_the_repository_registers_by_name(clean_registry, tmp_path, monkeypatch):
    (tmp_path / "outside_study.py").write_text(textwrap.dedent(OUTSIDE))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        register_study("squares", "outside_study")
        outcome = run_study(get_study("squares"), tmp_path / "out", progress=False)
        assert outcome.status == "ok"
        assert json.loads((tmp_path / "out" / "results.json").read_text())["squares"] == [0, 1, 4]
        register_study("gone", "outside_missing_module")
        assert run_study(get_study("gone"), tmp_path / "gone", progress=False).status == "unavailable"
    finally:
        sys.modules.pop("outside_study", None)


def test_an_entry_point_of_an_installed_distribution_is_found(tmp_path, monkeypatch):
    (tmp_path / "ep_study.py").write_text(textwrap.dedent(OUTSIDE))
    dist = tmp_path / "ep_study-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-study\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[nnsight_codi.studies]\nsquares_ep = ep_study\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        study = get_study("squares_ep")
        assert study.module == "ep_study" and study in select_studies("all")
        outcome = run_study(study, tmp_path / "out", progress=False)
        assert outcome.status == "ok", outcome.error
        assert json.loads((tmp_path / "out" / "results.json").read_text())["squares"] == [0, 1, 4]
    finally:
        sys.modules.pop("ep_study", None)
