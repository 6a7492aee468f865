"""The runnable examples in the harness modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["nnsight_codi.harness.tasks", "nnsight_codi.harness.adapter",
                                  "nnsight_codi.harness.scoring"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
