"""The `nnsight-codi` command: one subcommand per module in `nnsight_codi.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout

from . import __version__
from .commands.lm_eval import run_cli
from .errors import OneLineParser, error_line

COMMANDS = ("eval", "convert", "capture", "info", "train", "demo", "dashboard", "lens", "steer", "sweep", "cot-vectors", "lm-eval", "remote-check")


def build_parser() -> argparse.ArgumentParser:
    """The `nnsight-codi` argument parser with every available subcommand registered."""
    parser = OneLineParser(prog="nnsight-codi", description=__doc__)
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
    """Run `nnsight-codi` on `argv`; user errors become one stderr line and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["lm-eval"]:  # lm-eval's own command line, parsed by lm-eval itself
        args = argparse.Namespace(command="lm-eval", func=lambda _: run_cli(argv[1:]))
    else:
        args = build_parser().parse_args(argv)
    from .store.store_errors import StoreError

    try:
        with json_on_stdout(args):
            if args.command != "lm-eval":  # lm-eval checks its own command line
                from .commands.common import check_minimums

                check_minimums(args)  # count flags in range before any work
            return int(args.func(args) or 0)
    except (ValueError, OSError, StoreError) as err:  # user errors (bad path, flag, shape, range, no network)
        if _hub_id_error(err) and getattr(args, "remote", None) not in (None, "local"):  # a local --ndif-model dir
            from .tracing.remote import ndif_error

            err = ndif_error(err, getattr(args, "ndif_model", None) or "")
        print(error_line(args.command, err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a remote request the server refused or never answered: one line too
        if not _remote_failure(err):
            raise
        from .tracing.remote import ndif_error

        print(error_line(args.command, ndif_error(err, getattr(args, "ndif_model", None) or "")), file=sys.stderr)
        return 2


@contextmanager
def json_on_stdout(args: argparse.Namespace) -> Iterator[None]:
    """With `--json` and a remote run, only the JSON goes to stdout: nnsight's request status lines (which
    it writes to stdout) and any other print go to stderr.
    """
    remote = getattr(args, "remote", None)
    if not getattr(args, "json", False) or remote in (None, "local"):
        yield
        return
    from .commands.common import JSON_STREAMS

    JSON_STREAMS.append(sys.stdout)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        JSON_STREAMS.pop()


def _hub_id_error(err: BaseException) -> bool:
    """huggingface_hub's refusal of a repo id that is not `name` or `org/name` (e.g. a local directory)."""
    return type(err).__name__ == "HFValidationError" or "Repo id must be in the form" in str(err)


def _remote_failure(err: BaseException) -> bool:
    """Nnsight's `RemoteError` or an HTTP / websocket transport error of a remote run."""
    names = {cls.__name__ for cls in type(err).__mro__}
    module = type(err).__module__ or ""
    return "RemoteError" in names or module.startswith(("httpx", "httpcore", "websocket", "socketio"))


if __name__ == "__main__":
    sys.exit(main())
