"""Copies of this package's objects that NDIF's sandbox accepts (`portable(obj)`), for remote requests.

The session executor ships its loop state, step hooks and LoRA adapter by value. They are
dataclasses, and a dataclass shipped by value drags `dataclasses` internals (`Field`,
`_MISSING_TYPE`, `FrozenInstanceError`, `_thread` for its repr) into the pickle; its config holds
`pathlib.Path`s and has `json` I/O methods. NDIF's import whitelist refuses all of those
(`request_audit`). `portable` rebuilds such an object on a plain twin class: the same attribute
values and the same methods and properties, without the generated dataclass methods
(`__init__`, `__repr__`, `__eq__`, frozen `__setattr__`, …) and without methods that need a module
outside the whitelist (file I/O, json: never called where the model runs). Paths become strings,
containers and closures are converted element by element, and tensors are untouched — so the
server computes exactly what a local run computes (tested: `remote="local"` before and after).

Example:
    >>> from nnsight_codi.models.codi_config import CodiConfig
    >>> twin = portable(CodiConfig(pad_id=0, bot_id=1, eot_id=2))
    >>> twin.bot_id, hasattr(type(twin), "__dataclass_fields__")
    (1, False)
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import PurePath
from typing import Any

from .request_audit import DESERIALISATION_MODULES, allowed, audit_code

PACKAGE = "nnsight_codi"
# what @dataclass writes into a class (and `__post_init__`, which only its `__init__` calls): never shipped
_GENERATED = {"__post_init__", "__dataclass_fields__", "__dataclass_params__", "__match_args__", "__init__", "__repr__", "__eq__",
              "__hash__", "__setattr__", "__delattr__", "__lt__", "__le__", "__gt__", "__ge__",
              "__getstate__", "__setstate__", "__weakref__", "__dict__", "__slots__"}
_TWINS: dict[type, type] = {}


def _ours(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def runs_remotely(fn: Any, seen: set[int] | None = None) -> bool:
    """Whether a function (and this package's functions it calls) stays inside NDIF's whitelist."""
    seen = set() if seen is None else seen
    fn = getattr(fn, "__func__", fn)
    if isinstance(fn, property):
        return all(runs_remotely(f, seen) for f in (fn.fget, fn.fset, fn.fdel) if f is not None)
    if not isinstance(fn, types.FunctionType) or id(fn) in seen:
        return True
    seen.add(id(fn))
    glbls = fn.__globals__
    used = {name: glbls[name] for name in fn.__code__.co_names if name in glbls}
    if audit_code(fn.__code__, set(glbls), fn.__qualname__):
        return False
    for value in used.values():
        if isinstance(value, types.ModuleType):
            if not (value.__name__.startswith("nnsight") or allowed(value.__name__, DESERIALISATION_MODULES)):
                return False
        elif isinstance(value, types.FunctionType):
            if _ours(value):
                if not runs_remotely(value, seen):
                    return False
            elif not allowed(value.__module__ or "", DESERIALISATION_MODULES) \
                    and not (value.__module__ or "").startswith("nnsight"):
                return False
        elif isinstance(value, type) and not _ours(value) and value.__module__ != "builtins" \
                and not allowed(value.__module__, DESERIALISATION_MODULES) and not value.__module__.startswith("nnsight"):
            return False
        elif not isinstance(value, (type, types.FunctionType, types.ModuleType)):  # a constant: its type travels too
            module = type(value).__module__
            if not (module == "builtins" or _ours(type(value)) or module.startswith("nnsight")
                    or allowed(module, DESERIALISATION_MODULES)):
                return False  # e.g. a compiled regular expression (pickled as re._compile)
    return True


def twin_class(cls: type) -> type:
    """A plain class with `cls`'s methods and properties that run remotely (cached per class)."""
    twin = _TWINS.get(cls)
    if twin is not None:
        return twin
    bases = tuple(twin_class(b) if _ours(b) and b is not cls else b for b in cls.__bases__
                  if b is not object and not getattr(b, "_is_protocol", False))
    namespace: dict[str, Any] = {}
    for name, value in cls.__dict__.items():
        if name in _GENERATED:
            continue
        if isinstance(value, (types.FunctionType, staticmethod, classmethod, property)) and not runs_remotely(value):
            continue
        namespace[name] = value
    twin = type(cls.__name__, bases or (object,), namespace)
    twin.__qualname__ = cls.__qualname__
    _TWINS[cls] = twin
    return twin


def portable(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """A copy of `obj` for a remote request: this package's dataclasses on plain twins, paths as strings.

    Tensors, modules and foreign objects are kept as they are (shared, not copied).
    """
    memo = {} if memo is None else memo
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, PurePath):
        out: Any = str(obj)
    elif isinstance(obj, list):
        out = memo[key] = []
        out.extend(portable(x, memo) for x in obj)
    elif isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        out = tuple(portable(x, memo) for x in obj)
    elif isinstance(obj, dict) and type(obj) is dict:
        out = memo[key] = {}
        out.update({k: portable(v, memo) for k, v in obj.items()})
    elif isinstance(obj, types.FunctionType) and obj.__closure__ and _ours(obj):
        cells = tuple(types.CellType(portable(c.cell_contents, memo)) for c in obj.__closure__)
        out = types.FunctionType(obj.__code__, obj.__globals__, obj.__name__, obj.__defaults__, cells)
        out.__qualname__, out.__module__, out.__kwdefaults__ = obj.__qualname__, obj.__module__, obj.__kwdefaults__
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type) and _ours(type(obj)):
        twin = twin_class(type(obj))
        out = memo[key] = object.__new__(twin)
        for name, value in vars(obj).items():
            object.__setattr__(out, name, portable(value, memo))
    else:
        out = obj
    memo[key] = out
    return out
