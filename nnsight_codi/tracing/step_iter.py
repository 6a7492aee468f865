"""Step-aware `tracer.iter` for CODI traces: the loop variable knows its step's name.

In a plain nnsight trace `for step in tracer.iter[:8]` yields ints, so `if step == "latent3":` is
silently never true. Inside `with codi.latent_generate(...) as tracer:` (a local trace) the tracer
is a `CodiTracer`, whose `tracer.iter` yields `StepIndex`es: ints (index, slice, compare them as
before) that also compare with step names — `step == "latent3"` is true at latent 3, and a name
that is not a step of the run (`"latent9"` with K = 6, `"latent_3"`) raises ValueError instead of
being quietly false. `tracer.iter` also takes names: `tracer.iter["latent1":"eot"]`,
`tracer.iter["latent3"]`, `tracer.iter[["bot", "eot"]]`.

Example (K = 2: steps bot, latent1, latent2, eot, answer1, ...):
    >>> s = StepIndex(2, num_latents=2)
    >>> s == 2, s == "latent2", s == "latent1", s.name
    (True, True, False, 'latent2')
    >>> s == "latent9"
    Traceback (most recent call last):
    ...
    ValueError: step 'latent9' does not exist: the run has 2 latents (latent1..latent2)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nnsight.intervention.iterator import Iterations
from nnsight.intervention.tracer import InterleavingTracer

from ..steps import resolve_step, step_name


class StepIndex(int):
    """A step of a CODI trace as `tracer.iter` yields it: an int that also compares with step names.

    `offset` is the step the traced run started at (a continued `LoopSnapshot`): occurrence i is
    step `offset + i`, so the int is i (as nnsight's `tracer.iter` counts) and the name is the step's.
    """

    num_latents: int
    offset: int

    def __new__(cls, index: int, num_latents: int, offset: int = 0) -> StepIndex:
        obj = super().__new__(cls, index)
        obj.num_latents, obj.offset = num_latents, offset
        return obj

    @property
    def name(self) -> str:
        """The step's name: `bot`, `latent1`..`latentK`, `eot`, `answer1`, ..."""
        return step_name(int(self) + self.offset, self.num_latents)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return int(self) + self.offset == resolve_step(other, self.num_latents)
        return int(self) == other

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = int.__hash__

    def __repr__(self) -> str:
        return f"StepIndex({int(self)}, {self.name!r})"


class StepIterations(Iterations):
    """`tracer.iter` of a CODI trace: nnsight's occurrence selection, by index or by step name."""

    def __init__(self, num_latents: int, offset: int = 0, start: int = 0, stop: int | None = None,
                 steps: list[int] | None = None) -> None:
        super().__init__(start, stop, steps)
        self.num_latents, self.offset = num_latents, offset

    def _index(self, key: Any) -> Any:
        """A step name to its occurrence index in this trace (ints and None pass through)."""
        if isinstance(key, str):
            index = resolve_step(key, self.num_latents) - self.offset
            if index < 0:
                raise ValueError(f"step {key!r} ran before this trace (it continues from step {self.offset})")
            return index
        return key

    def __getitem__(self, key: Any) -> StepIterations:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise ValueError("tracer.iter takes no slice step; list the steps instead")
            return StepIterations(self.num_latents, self.offset, self._index(key.start) or 0, self._index(key.stop))
        if isinstance(key, (list, tuple)):
            return StepIterations(self.num_latents, self.offset, steps=[self._index(k) for k in key])
        index = self._index(key)
        return StepIterations(self.num_latents, self.offset, index, index + 1)

    def __iter__(self) -> Iterator[int]:
        for index in super().__iter__():
            yield StepIndex(index, self.num_latents, self.offset)


class CodiTracer(InterleavingTracer):
    """The tracer of a local `codi.latent_generate(...)` trace: `tracer.iter` is step-aware."""

    def __init__(self, envoy: Any, fn: Any, *args: Any, backend: Any = None, **kwargs: Any) -> None:
        super().__init__(envoy, fn, *args, backend=backend, **kwargs)
        prompts = args[0] if args else kwargs.get("prompts")
        state = getattr(prompts, "state", None)  # a LoopSnapshot continues from its own step and K
        if state is not None:
            self.num_latents, self.offset = int(state.num_latents), int(state.step)
        else:
            k = kwargs.get("num_latents")
            self.num_latents, self.offset = int(envoy.num_latents if k is None else k), 0

    @property
    def iter(self) -> StepIterations:
        """Occurrences by index or step name; the loop variable is a `StepIndex` (see module doc)."""
        return StepIterations(self.num_latents, self.offset)
