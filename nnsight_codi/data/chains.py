r"""The chain-of-thought format of GSM8k-Aug: one `<<a op b = c>>` annotation per step.

The one parser of that format: every reader (calculator results for the lens, steps for
training, equations of the synthetic data, whether a generated answer reasons, the operands the
attention study looks for) goes through it. Torch-free.

An **annotation** is `<<`, a left side without `=`, `=`, a right side, `>>`, with no `<` or `>`
inside (spaces, commas, decimals, signs and further `=` on the right are kept as written). An
unbalanced `<<2+3=5` or `2+3=5>>` is none. Each annotation reads as:

- `result`: the number after its last `=` (`'3,602'`), when that is a number (`-?[\d,]*\.?\d+`);
- `operands()`: the unsigned numbers of its left side;
- `equation()`: an `Equation(a, op, b, c)` of two integer operands and one of `+ - * /`, when it is one.

Example:
    >>> [a.lhs for a in annotations("<<1,200*3+2=3,602>> then <<3602/2=1801>>")]
    ['1,200*3+2', '3602/2']
    >>> results("<<48/2=24>>24 then <<24-1=23>> <<x=y>>")
    ['24', '23']
    >>> equations("<< 4 * 6 = 24 >> <<24-3=21>> <<0.5*4=2>>")
    [Equation(a=4, op='*', b=6, c=24), Equation(a=24, op='-', b=3, c=21)]
    >>> has_annotation("The answer is : 5"), count_annotations("<<2+3=5>> <<5*2=10>>")
    (False, 2)
    >>> step_spans("<<4*6=24>> <<24-3=21>>"), prose_equations("30 * 6 = 60 >> The answer is : 60")
    (['<<4*6=24>>', '<<24-3=21>>'], ['30*6=60'])
"""

import re
from dataclasses import dataclass
from typing import NamedTuple

ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
"""A complete annotation; groups: the left side (no `=`) and the right side."""

SPAN = re.compile(r"<<.*?>>")
"""Any `<<…>>` on one line, `=` or not (how training splits a chain into steps)."""

PROSE_EQUATION = re.compile(r"-?\d+(?:\.\d+)?\s*[-+*/x×÷]\s*-?\d+(?:\.\d+)?\s*=\s*-?\d+")
"""An intermediate equation `a op b = c` written in prose, with or without the `<< >>` markup."""

OPERAND = re.compile(r"\d[\d,]*(?:\.\d+)?")
"""An unsigned number of an annotation's left side (commas as written)."""

_RESULT = re.compile(r"\s*(-?[\d,]*\.?\d+)\s*")
_EQUATION = re.compile(r"\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*")


class Equation(NamedTuple):
    """One step of two integer operands: `a op b = c`."""

    a: int
    op: str
    b: int
    c: int


@dataclass(frozen=True)
class Annotation:
    """One `<<lhs=rhs>>` annotation of a text (`rhs` may hold further `=`)."""

    lhs: str
    rhs: str

    @property
    def result(self) -> str | None:
        """The number after the last `=` as written (`'3,602'`, `'-7'`, `'.5'`), or None."""
        m = _RESULT.fullmatch(self.rhs.rsplit("=", 1)[-1])
        return m.group(1) if m else None

    def operands(self) -> list[str]:
        """The unsigned numbers of the left side, as written (`'1,200'`)."""
        return OPERAND.findall(self.lhs)

    def equation(self) -> Equation | None:
        """`Equation(a, op, b, c)` when the annotation is two integers and one of `+ - * /`, else None."""
        m = _EQUATION.fullmatch(f"{self.lhs}={self.rhs}")
        return None if m is None else Equation(int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))


def annotations(text: str) -> list[Annotation]:
    """The complete annotations of `text`, in order."""
    return [Annotation(lhs, rhs) for lhs, rhs in ANNOTATION.findall(text)]


def has_annotation(text: str) -> bool:
    """Whether `text` holds at least one complete annotation."""
    return ANNOTATION.search(text) is not None


def count_annotations(text: str) -> int:
    """The number of complete annotations in `text`."""
    return len(ANNOTATION.findall(text))


def results(text: str) -> list[str]:
    """The results `c` of the annotations whose right side ends in a number, as written, in order."""
    return [r for a in annotations(text) if (r := a.result) is not None]


def equations(text: str) -> list[Equation]:
    """The two-operand integer equations of `text`, in order (other annotations are skipped)."""
    return [e for a in annotations(text) if (e := a.equation()) is not None]


def step_spans(text: str) -> list[str]:
    """Every `<<…>>` of `text` as written (loose: one line, `=` or not, the shortest span)."""
    return SPAN.findall(text)


def prose_equations(text: str) -> list[str]:
    """The equations `a op b = c` written in `text` (marked up or not), without spaces, in order."""
    return [re.sub(r"\s+", "", m.group(0)) for m in PROSE_EQUATION.finditer(text)]


def has_prose_equation(text: str) -> bool:
    """Whether `text` writes an equation `a op b = c` (marked up or not)."""
    return PROSE_EQUATION.search(text) is not None
