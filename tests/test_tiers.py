"""Every test gets its tier from where it lives (tests/conftest.py), and the slow list names real tests."""

from __future__ import annotations

from pathlib import Path

from tiers import ACCEPTANCE, HERE, SLOW, UNIT, tier_of


def test_tiers_follow_the_directory():
    assert tier_of(Path("store/test_new.py")) == "unit"
    assert tier_of(Path("test_architecture.py")) == "unit"
    assert tier_of(Path("a_new_directory/test_new.py")) == "integration"  # the default for new places
    assert tier_of(Path("ndif_loopback/test_live.py")) == "acceptance"
    files = sorted(p.relative_to(HERE) for p in HERE.rglob("test_*.py"))
    assert {tier_of(f) for f in files} == {"unit", "integration", "acceptance"}


def test_every_listed_place_and_slow_test_exists():
    files = sorted(p.relative_to(HERE) for p in HERE.rglob("test_*.py"))
    places = {part for f in files for part in f.parts}
    future = {"ndif_loopback"}  # the live NDIF suite's directory (comes with its branch)
    assert (UNIT | ACCEPTANCE | {e.split("::")[0] for e in SLOW}) - places <= future
    for entry in SLOW:
        if "::" in entry:
            name, function = entry.split("::")
            (path,) = [HERE / f for f in files if f.name == name]
            assert f"def {function}(" in path.read_text(), entry
