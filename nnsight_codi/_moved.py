"""Public names that moved, still importable from their old module for one release (removed in 0.2).

An old module keeps one line, ``__getattr__ = moved(__name__, {"name": "new.module", ...})``; reading a
name from it warns with a `DeprecationWarning` that says where the name lives now. The targets are
strings, imported only when an old path is used, so a shim adds no import edge to the package's layering
(`tests/test_architecture.py` lists the shims and checks that each one warns and forwards).

Example:
    >>> import warnings
    >>> getattr_ = moved("old.place", {"sqrt": "math"})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     getattr_("sqrt")(9.0)
    3.0
    >>> print(caught[0].message)
    old.place.sqrt moved to math.sqrt; the old path is removed in nnsight-codi 0.2
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any

REMOVED_IN = "0.2"


def moved(old_module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` forwarding each of `names` (name → its new module) with a warning."""
    names = dict(names)

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        new_module = names[name]
        warnings.warn(f"{old_module}.{name} moved to {new_module}.{name}; the old path is removed in "
                      f"nnsight-codi {REMOVED_IN}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new_module), name)

    __getattr__.moved_names = names  # type: ignore[attr-defined]  (read by the architecture test)
    return __getattr__
