"""The `nnsight-codi` command: one subcommand per module in `nnsight_codi.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("eval", "convert", "capture", "info", "train", "demo", "cot-vectors", "lm-eval")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="nnsight-codi", description=__doc__)
    parser.add_argument("--version", action="version", version=f"nnsight-codi {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"nnsight_codi.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as err:
            if err.name == f"nnsight_codi.commands.{name.replace('-', '_')}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .store.errors import StoreError

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError, StoreError) as err:
        print(f"nnsight-codi {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
