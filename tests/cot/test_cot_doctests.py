"""The runnable examples in the cot / harness module docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["nnsight_codi.cot.prompts", "nnsight_codi.cot.steering", "nnsight_codi.cot.generation",
           "nnsight_codi.cot.grid", "nnsight_codi.cot.questions", "nnsight_codi.tracing.remote",
           "nnsight_codi.harness.scoring", "nnsight_codi.harness.tasks", "nnsight_codi.training.paraphrases",
           "analyses.cot_vectors"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
