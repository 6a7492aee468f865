"""A griffe extension for the API reference: doctest lines render as code wherever they stand.

The library's docstrings put doctests under `Example:` (which Google style reads as an admonition,
rendered as Markdown) or in running text; there `[s.name for s in STUDIES][:2]` would be read as a
Markdown link. This extension fences every run of `>>>` lines (with their `...` continuations and
expected output) as a `pycon` code block, and drops `# doctest:` directives from what is shown.
The docstrings themselves are unchanged (they stay plain doctests that `tests/test_doctests.py` runs).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def fence_doctests(text: str) -> str:
    r"""Wrap each run of doctest lines of `text` in a ```pycon fence at the run's own indentation.

    >>> text = ["Example:", "    >>> f([1][:1])  # doctest: +SKIP", "    [1]", "End."]
    >>> for line in fence_doctests("\n".join(text)).split("\n"):
    ...     print(repr(line))
    'Example:'
    '    ```pycon'
    '    >>> f([1][:1])'
    '    [1]'
    '    ```'
    'End.'
    """
    lines = text.split("\n")
    out: list[str] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
            i += 1
            continue
        stripped = line.lstrip()
        if in_fence or not (stripped == ">>>" or stripped.startswith(">>> ")):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent) and not _FENCE.match(lines[i]):
            out.append(_DIRECTIVE.sub("", lines[i]))
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestsAsCode(griffe.Extension):
    """Fence the doctests of every docstring griffe loads (see the module docstring)."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
