"""The `lens` / `unembed` part of a capture: which read-outs a request asks for, and computing them.

`LensRequest.from_variables` splits a capture's requested variables into the per-example lens
read-outs (`lens_*`, `tuned_lens_*`) and the per-store `unembed`; `apply` turns a batch's
recorded `hidden` into the read-outs (the hidden states are recorded by the one `Capture` hook
whether or not `hidden` itself is stored); `write_static` puts the vocabulary (`token_string`),
with lens read-outs the tokenizer (`tokenizer_json`, which tokens begin a number) and, on request,
the unembedding into the store.

Example:
    >>> req = LensRequest.from_variables(("hidden", "lens_top_ids", "unembed"), k=5)
    >>> req.store_variables, req.needs_hidden, req.unembed
    (('hidden', 'lens_top_ids'), True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..store.schema import LENS_GROUPS, STATIC_REQUESTS
from .numbers import write_tokenizer
from .readout import lens_readouts
from .unembed import Unembedding, vocabulary, write_static

if TYPE_CHECKING:
    from nnsight import TransformersModel
    from transformers import PreTrainedModel

    from ..tracing.codi_model import CodiModel

LOGIT_VARS = LENS_GROUPS["lens"]
TUNED_VARS = LENS_GROUPS["tuned_lens"]


def with_tuned(variables: Sequence[str], lens_path: str | None) -> tuple[str, ...]:
    """With a tuned lens given, a request for logit-lens read-outs also stores the tuned ones."""
    variables = tuple(variables)
    if lens_path and any(v in LOGIT_VARS for v in variables):
        tuned = [t for v, t in zip(LOGIT_VARS, TUNED_VARS) if v in variables and t not in variables]
        static = [v for v in variables if v in STATIC_REQUESTS]
        variables = tuple(v for v in variables if v not in STATIC_REQUESTS) + tuple(tuned) + tuple(static)
    return variables


@dataclass
class LensRequest:
    """What a capture asks of the lenses."""

    variables: tuple[str, ...]
    k: int = 10
    lens_path: str | None = None
    tuned: Any = None

    @classmethod
    def from_variables(cls, variables: Sequence[str], k: int = 10, lens_path: str | None = None) -> LensRequest:
        variables = tuple(variables)
        if any(v in TUNED_VARS for v in variables) and not lens_path:
            raise ValueError("tuned_lens read-outs need a tuned lens: give --lens-path DIR "
                             "(train one with `nnsight-codi lens train`)")
        if lens_path and not any(v in TUNED_VARS for v in variables):
            raise ValueError("--lens-path given but no lens read-outs requested: add lens to --what")
        if (any(v in LOGIT_VARS + TUNED_VARS for v in variables)) and (not isinstance(k, int) or k < 1):
            raise ValueError(f"--lens-k must be a positive integer, got {k!r}")
        if lens_path and not Path(lens_path).is_dir():
            raise FileNotFoundError(f"tuned lens directory {lens_path} not found")
        return cls(variables, k, lens_path)

    @property
    def logit(self) -> tuple[str, ...]:
        return tuple(v for v in self.variables if v in LOGIT_VARS)

    @property
    def tuned_vars(self) -> tuple[str, ...]:
        return tuple(v for v in self.variables if v in TUNED_VARS)

    @property
    def any_lens(self) -> bool:
        return bool(self.logit or self.tuned_vars)

    @property
    def unembed(self) -> bool:
        return "unembed" in self.variables

    @property
    def store_variables(self) -> tuple[str, ...]:
        """The per-example variables the store writer holds (`unembed` is per store)."""
        return tuple(v for v in self.variables if v not in STATIC_REQUESTS)

    @property
    def needs_hidden(self) -> bool:
        return self.any_lens

    @property
    def needs_vocabulary(self) -> bool:
        return self.any_lens or self.unembed

    def load(self, model: CodiModel | PreTrainedModel) -> None:
        """Check k against the vocabulary and load the tuned lens (refused if it was trained for
        another model), before any work.
        """
        if self.any_lens and self.k > _vocab(model):
            raise ValueError(f"--lens-k {self.k} exceeds the vocabulary size {_vocab(model)}")
        if self.lens_path:
            from .tuned import TunedLens

            self.tuned = TunedLens.load(self.lens_path, model=model)
            self.tuned.requires_grad_(False)

    def apply(self, model: CodiModel | PreTrainedModel, data: dict[str, np.ndarray],
              layers: Sequence[int]) -> dict[str, np.ndarray]:
        """Add the requested read-outs to a batch's `data` (from its `hidden`); drop `hidden`
        unless it was requested itself.
        """
        if not self.any_lens:
            return data
        hidden = data["hidden"]
        if self.logit:
            out = lens_readouts(model, hidden, layers, self.k, prefix="lens")
            data.update({v: out[v] for v in self.logit})
        if self.tuned_vars:
            out = lens_readouts(model, hidden, layers, self.k, tuned=self.tuned,
                                prefix="tuned_lens")
            data.update({v: out[v] for v in self.tuned_vars})
        if "hidden" not in self.variables:
            data.pop("hidden")
        return data

    def write_static(self, path: str | Path, model: CodiModel | TransformersModel) -> None:
        """The vocabulary (and, if requested, the unembedding) into the store at `path`."""
        if not self.needs_vocabulary:
            return
        if self.unembed:
            u = Unembedding.from_model(model)
            write_static(path, u.token_strings or [""] * u.vocab_size, u)
        else:
            write_static(path, vocabulary(model.tokenizer, _vocab(model)))
        if self.any_lens:
            write_tokenizer(path, getattr(model, "tokenizer", None))


def _vocab(model: CodiModel | PreTrainedModel) -> int:
    from .logit import _module, unembedding

    return int(unembedding(_module(model)).weight.shape[0])
