"""Dataclass configs that double as the command line (as tuned-lens and SAELens do), and load
from config files with their types checked (`config_from_dict`).

Every field becomes `--field-name`; its help is the field's `metadata["help"]` (or its type and
default). Types handled: str, int, float, bool (`--flag` / `--no-flag`), `X | None`, and tuples
or lists of int/float/str (comma-separated).

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Config:
    ...     limit: int = 64
    ...     layers: tuple[int, ...] = (1, 2)
    ...     tuned_lens: str | None = field(default=None, metadata={"help": "a tuned-lens directory"})
    ...     quick: bool = False
    >>> parse_config(Config, ["--limit", "8", "--layers", "0,3", "--quick"])
    Config(limit=8, layers=(0, 3), tuned_lens=None, quick=True)
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """`X | None` → (X, True); anything else → (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _converter(tp: Any):
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = args[0] if args else str
        container = tuple if origin is tuple else list

        def parse(text: str):
            parts = [p.strip() for p in text.split(",") if p.strip()]
            try:
                return container(item(p) for p in parts)
            except ValueError as err:
                raise argparse.ArgumentTypeError(f"expected comma-separated {item.__name__}s, got {text!r}") from err

        return parse
    if tp in (int, float, str):
        return tp
    raise TypeError(f"config_cli: unsupported field type {tp!r}")


def add_config_args(parser: argparse.ArgumentParser, cls: type, help_texts: Mapping[str, str] | None = None,
                    exclude: Collection[str] = (), unset: bool = False) -> None:
    """Add one option per field of the dataclass `cls` to `parser`.

    `help_texts` gives help by field name (else the field's `metadata["help"]`); fields named in
    `exclude` get no option. With `unset=True` every option defaults to None (its help still shows
    the field's default), so a caller can tell the flags given from the rest, e.g. to lay them over
    a config file (`config_kwargs(..., given_only=True)`).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        tp, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_text = (help_texts or {}).get(f.name, f.metadata.get("help", ""))
        help_text = f"{help_text} (default: {default})".strip()
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None if unset else default, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=_converter(tp), default=None if unset else default,
                                help=help_text + (" [optional]" if optional else ""))


def config_kwargs(cls: type, args: argparse.Namespace, given_only: bool = False) -> dict[str, Any]:
    """The values of `cls`'s fields in parsed `args` (fields without an option are left out); with
    `given_only`, only those not None (the flags given, after `add_config_args(..., unset=True)`).
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return {k: v for k, v in values.items() if v is not None} if given_only else values


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Does a JSON/YAML/TOML value fit the annotation `tp` (int fits float; bool fits only bool)?"""
    if tp is Any or tp is object:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin in (list, tuple, collections.abc.Sequence):  # items checked against the first item type
        if not isinstance(value, (list, tuple)):
            return False
        items = [a for a in args if a is not Ellipsis]
        return not items or all(_matches(v, items[0]) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else True


def config_from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """An instance of the dataclass `cls` from a parsed config file, refusing unknown keys and
    values of the wrong type with one clear `ValueError` (`what` names the config in messages).

        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     steps: int | None = 3
        >>> config_from_dict(C, {"steps": "x"}, "train config")
        Traceback (most recent call last):
        ...
        ValueError: train config: steps must be int | None, got 'x' (str)
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a mapping of keys to values, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; valid: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _matches(value, hints[key]):
            raise ValueError(f"{what}: {key} must be {_type_name(hints[key])}, got {value!r} ({type(value).__name__})")
    return cls(**data)


def parse_config(cls: type[T], argv: list[str] | None = None, description: str | None = None) -> T:
    """Parse `argv` into an instance of the dataclass `cls`."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    add_config_args(parser, cls)
    args = parser.parse_args(argv)
    return cls(**config_kwargs(cls, args))
