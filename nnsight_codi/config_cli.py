"""Dataclass configs that double as the command line (as tuned-lens and SAELens do).

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
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


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


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one option per field of the dataclass `cls` to `parser`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        help_text = f"{help_text} (default: {default})".strip()
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=_converter(tp), default=default,
                                help=help_text + (" [optional]" if optional else ""))


def parse_config(cls: type[T], argv: list[str] | None = None, description: str | None = None) -> T:
    """Parse `argv` into an instance of the dataclass `cls`."""
    parser = argparse.ArgumentParser(description=description or cls.__doc__)
    add_config_args(parser, cls)
    args = parser.parse_args(argv)
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
