r"""User errors as one line: the `argparse` parser and the `main(argv)` decorator every command line uses.

A user error (bad path, value, shape, a store that is not one) is one line on stderr and exit
status 2, never a traceback: `OneLineParser` for usage errors, `one_line_errors` around a module's
`main(argv) -> int` (the `analyses/` modules, the `runs/` scripts, `studies.study_main`), and
`error_line` for the message. Torch-free, so the analyses can use it from a store alone.

Example:
    >>> error_line("eval", ValueError("bad value\n  see the docs"))
    'nnsight-codi eval: error: bad value; see the docs'
"""

from __future__ import annotations

import argparse
import functools
import sys


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`nnsight-codi eval: error: …`), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(err: BaseException, join: bool = False) -> str:
    r"""An exception's message on one line: its first non-empty line (a wrapped library error's headline), or
    with `join` all of them joined by "; " (library messages are often paragraphs).

    Example:
        >>> one_line(OSError("no file\n  try again")), one_line(OSError("no file\n  try again"), join=True)
        ('no file', 'no file; try again')
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    return "; ".join(lines) if join else lines[0]


def error_line(command: str, err: BaseException) -> str:
    """One line for a user error of `nnsight-codi COMMAND`: `one_line` of the message after the command."""
    return f"nnsight-codi {command}: error: " + one_line(err, join=True)


def one_line_errors(prog: str):
    """Decorator for a module's `main(argv) -> int` (the `analyses/` modules): a user error (bad
    path, value, shape) is one line on stderr and exit status 2, never a traceback.
    """

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None) -> int:
            from .store.store_errors import StoreError

            try:
                return main(argv)
            except (ValueError, OSError, KeyError, StoreError) as err:
                print(error_line(prog, err).replace("nnsight-codi ", "", 1), file=sys.stderr)
                return 2

        return run

    return wrap
