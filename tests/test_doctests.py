"""The runnable examples in docstrings stay true: every module of `nnsight_codi` (and of
`analyses/`) is collected, so no hand-kept list decides which examples run.

An example is skipped (`# doctest: +SKIP`) only where it needs a hub download or a long run;
a module whose import needs an optional dependency that is not installed is skipped whole.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("nnsight_codi", "analyses")
NOT_IMPORTABLE = {"nnsight_codi.__main__"}  # runs the CLI when imported


def all_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, f"{package}.")]
    return sorted(n for n in names if n not in NOT_IMPORTABLE)


MODULES = all_modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:  # an optional dependency (lm-eval, tuned-lens, …) not installed
        if err.name and not err.name.startswith(PACKAGES):
            pytest.skip(f"{name} needs {err.name}")
        raise
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_examples_that_motivated_collection_run():
    """The examples once outside every list (the loop, the model, the store writer) are collected and run."""
    for name in ("nnsight_codi.tracing.loop", "nnsight_codi.tracing.codi_model", "nnsight_codi.store.writer"):
        assert name in MODULES
        tests = doctest.DocTestFinder().find(importlib.import_module(name))
        assert any(not ex.options.get(doctest.SKIP) for t in tests for ex in t.examples), name
