"""`config_cli.config_from_dict`: config files are checked against the dataclass's annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from nnsight_codi.config_cli import config_from_dict


@dataclass
class Example:
    steps: int | None = 3
    lr: float = 1e-3
    quick: bool = False
    coefs: list[float] = field(default_factory=list)
    pairs: list[list[int]] | None = None
    layers: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    anything: Any = None


def test_valid_values_pass_and_ints_fit_floats():
    got = config_from_dict(Example, {"steps": None, "lr": 2, "quick": True, "coefs": [1, 2.5], "pairs": [[1, 2]],
                                     "layers": [0, 3], "extra": {"a": 1}, "anything": "x"}, "example")
    assert got.lr == 2 and got.coefs == [1, 2.5] and got.pairs == [[1, 2]]


@pytest.mark.parametrize("data, message", [
    ({"steps": "3"}, "steps must be int | None, got '3' (str)"),
    ({"steps": True}, "steps must be int | None, got True (bool)"),
    ({"lr": "fast"}, "lr must be float"),
    ({"quick": 1}, "quick must be bool, got 1 (int)"),
    ({"coefs": "1,2"}, "coefs must be list[float]"),
    ({"coefs": [1, "x"]}, "coefs must be list[float]"),
    ({"pairs": [[1, "b"]]}, "pairs must be list[list[int]] | None"),
    ({"layers": [0.5]}, "layers must be tuple[int, ...]"),
    ({"extra": [1]}, "extra must be dict[str, Any]"),
    ({"stpes": 3}, "unknown key(s) ['stpes']"),
])
def test_wrong_types_and_unknown_keys_are_one_clear_error(data, message):
    with pytest.raises(ValueError) as err:
        config_from_dict(Example, data, "example config")
    assert str(err.value).startswith("example config: ") and message in str(err.value)
