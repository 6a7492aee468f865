"""The runnable examples in module docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["nnsight_codi.steps", "nnsight_codi.tracing.batching", "nnsight_codi.models.architecture",
           "nnsight_codi.models.config", "nnsight_codi.models.projection", "nnsight_codi.models.registry",
           "nnsight_codi.data.scoring", "nnsight_codi.store.schema",
           "nnsight_codi.stats", "nnsight_codi.reporting", "nnsight_codi.config_cli", "nnsight_codi.studies"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
