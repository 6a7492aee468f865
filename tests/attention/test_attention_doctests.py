"""The runnable examples in the attention and dashboard modules' docstrings stay true (beside
tests/test_doctests.py's list, to keep that shared list's edits to the lead)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["nnsight_codi.store.positions", "nnsight_codi.commands.capture",
                                  "analyses.attention"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
