"""The runnable examples in the lens modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["nnsight_codi.lens.unembed", "nnsight_codi.lens.readout", "nnsight_codi.lens.values",
           "nnsight_codi.lens.tuned", "nnsight_codi.lens.train", "nnsight_codi.lens.capture", "nnsight_codi.probes"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS,
                             extraglobs={"np": __import__("numpy"), "torch": __import__("torch")})
    assert result.attempted > 0 and result.failed == 0
