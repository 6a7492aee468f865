"""The activation-store schema: variable names, their dims, dtypes and fill values.

One zarr group per capture; opened it is an `xarray.Dataset` with these variables. Steps follow the CODI step convention: step 0 = `bot`, steps 1..K = `latent1`
.. `latentK`, step K+1 = `eot`. Layers are 0..L: 0 = embedding output, L = last block output
(pre final norm).

Positions are per example, left-aligned: position p is the p-th token of that example's own
sequence `[question tokens][bot][z1..zK][eot]` (no padding in front); positions past the
example's end hold the variable's fill value, and `prompt_length` says where the prompt ends.

Example:
    >>> validate_variables(["hidden", "correct"])
    ('hidden', 'correct')
    >>> validate_layers([0, -1], num_layers=12)
    (0, 12)
    >>> step_names(2)
    ['bot', 'latent1', 'latent2', 'eot']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnsight_codi.steps import step_names as _step_names
from nnsight_codi.store.store_errors import SchemaError

SCHEMA_VERSION = 1
"""Bumped whenever the layout changes in a way old readers cannot read."""

FLOAT_DTYPES = ("float32", "float16")
"""Storage dtypes for float variables (bfloat16 captures are stored as one of these)."""

LAYER_DOC = (
    "layer 0 = embedding output (input of block 0); layer l = output of block l-1; "
    "layer L = output of the last block, before the final norm"
)
STEP_DOC = "step 0 = bot, steps 1..K = latent1..latentK, step K+1 = eot"
POSITION_DOC = (
    "position p = p-th token of the example's own unpadded sequence "
    "[question][bot][latents][eot]; positions past its end hold the fill value; "
    "prompt_length gives the number of question tokens"
)

SOURCE_DOC = {
    "source_token": "string of the token at each position (latents are z1..zK; \"\" past the end)",
    "source_kind": "kind of each position: prompt, number (a prompt token that is a number), bot, "
                   "latent1..latentK, eot, eos; \"\" past the end",
}
"""Descriptions of the per-example position coordinates (what each attention source is)."""


@dataclass(frozen=True)
class VarSpec:
    """One variable of the schema.

    Attributes:
        dims: dimension names, `example` first.
        kind: "float" (stored in the capture's float dtype), "int32", "float64", "bool" or "str"
            (variable-length text).
        fill: value of positions/examples never written (`None` = the float NaN).
        doc: one line stored in the variable's `description` attribute.
    """

    dims: tuple[str, ...]
    kind: str
    fill: Any
    doc: str

    def dtype(self, float_dtype: str) -> str:
        """The numpy dtype this variable is stored with."""
        if self.kind == "str":
            return "object"
        return float_dtype if self.kind == "float" else self.kind

    def fill_value(self, pad_id: int = -1) -> Any:
        """The fill value (`pad_id` for `prompt_ids`)."""
        if self.fill == "pad":
            return pad_id
        return math.nan if self.fill is None else self.fill


VARIABLES: dict[str, VarSpec] = {
    "hidden": VarSpec(("example", "step", "layer", "dim"), "float", None,
                      "residual stream at each step and layer (pre final norm)"),
    "latent_input": VarSpec(("example", "step", "dim"), "float", None,
                            "vector fed in as the input embedding at each step (prj output at "
                            "latent steps)"),
    "kv": VarSpec(("example", "layer", "kv_part", "head", "position", "head_dim"), "float", None,
                  "KV cache at the end of the latent phase; kv_part = key/value; kv[layer=l] is "
                  "the cache of the block whose output is layer l (block l-1); layer 0 has no "
                  "cache (NaN)"),
    "attention": VarSpec(("example", "step", "position"), "float", None,
                         "attention of each step's query over positions, averaged over all "
                         "layers and heads"),
    "attention_layers": VarSpec(("example", "step", "block", "position"), "float", None,
                                "attention of each step's query over positions per block (its "
                                "attention layer; block b's output is layer b+1), averaged over heads"),
    "attention_heads": VarSpec(("example", "step", "block", "attention_head", "position"), "float",
                               None, "attention of each step's query over positions per block and "
                               "head (block b's output is layer b+1)"),
    "lens_top_ids": VarSpec(("example", "step", "layer", "k"), "int32", -1,
                            "logit lens top-k token ids at each step and layer"),
    "lens_top_probs": VarSpec(("example", "step", "layer", "k"), "float", None,
                              "logit lens top-k probabilities at each step and layer"),
    "lens_entropy": VarSpec(("example", "step", "layer"), "float", None,
                            "entropy (nats) of the logit lens distribution at each step and layer"),
    "tuned_lens_top_ids": VarSpec(("example", "step", "layer", "k"), "int32", -1,
                                  "tuned lens top-k token ids at each step and layer"),
    "tuned_lens_top_probs": VarSpec(("example", "step", "layer", "k"), "float", None,
                                    "tuned lens top-k probabilities at each step and layer"),
    "tuned_lens_entropy": VarSpec(("example", "step", "layer"), "float", None,
                                  "entropy (nats) of the tuned lens distribution at each step and layer"),
    "answer_pred": VarSpec(("example",), "float64", None,
                           "predicted numeric answer (NaN if none could be parsed)"),
    "answer_gold": VarSpec(("example",), "float64", None, "gold numeric answer"),
    "correct": VarSpec(("example",), "bool", False, "answer_pred == answer_gold"),
    "prompt_ids": VarSpec(("example", "position"), "int32", "pad",
                          "prompt token ids, left-aligned, padded with pad_id"),
    # CoT-vector stores (nnsight_codi.cot.vector_estimation): the step dim holds the prompt mode (cot, direct)
    "steering_diff": VarSpec(("example", "layer", "dim"), "float", None,
                             "per-example difference of mean residual streams (CoT - direct prompt)"),
    "mode_prompt_ids": VarSpec(("example", "step", "position"), "int32", "pad",
                               "prompt token ids per prompt mode (step), left-aligned, padded with pad_id"),
    "generated_ids": VarSpec(("example", "step", "position"), "int32", "pad",
                             "generated token ids per prompt mode (step), left-aligned, padded with pad_id"),
    "step_text": VarSpec(("example", "step"), "str", "",
                         "SIM-CoT step decoder: the text of the reasoning step decoded (greedy) from the vector "
                         "each step produces (the next latent input; \"\" where none is decoded)"),
    "step_ids": VarSpec(("example", "step", "step_token"), "int32", -1,
                        "SIM-CoT step decoder: the token ids of step_text (eos included when written; -1 past "
                        "the end)"),
    "prompt_length": VarSpec(("example",), "int32", -1,
                             "number of prompt tokens of the example (-1 if not recorded)"),
    "complete": VarSpec(("example",), "bool", False,
                        "True once the example's batch was fully written (the manifest is "
                        "authoritative; this lets plain xarray users mask)"),
}
"""Every variable a store can hold."""

AUTOMATIC = ("prompt_length", "complete")
"""Variables every store has; the writer adds them (`complete` is set by the writer itself)."""

REQUESTABLE = tuple(name for name in VARIABLES if name not in AUTOMATIC)
"""Variable names a capture may request."""

DEFAULT_VARIABLES = ("hidden", "latent_input", "answer_pred", "answer_gold", "correct",
                     "prompt_ids")
"""What a capture stores when nothing is requested (kv and attention are large/optional)."""

SIZED_DIMS = ("dim", "position", "k", "head", "head_dim", "block", "attention_head", "step_token")
"""Dimensions whose size the writer must be told (`example`, `step`, `layer` come from coords)."""

KV_NAMES = ("key", "value")
"""Coordinate of the `kv_part` dim (a dim cannot be named `kv` like its variable)."""


LENS_GROUPS: dict[str, tuple[str, ...]] = {
    "lens": ("lens_top_ids", "lens_top_probs", "lens_entropy"),
    "tuned_lens": ("tuned_lens_top_ids", "tuned_lens_top_probs", "tuned_lens_entropy"),
    "step_decoder": ("step_text", "step_ids"),
}
"""Request names that stand for a lens's read-outs (`--what hidden,lens`)."""

STATIC_VARIABLES: dict[str, tuple[str, ...]] = {
    "token_string": ("token_id",),
    "unembed_weight": ("token_id", "dim"),
    "unembed_bias": ("token_id",),
    "unembed_norm_weight": ("dim",),
    "unembed_norm_bias": ("dim",),
    "tokenizer_json": ("tokenizer",),
}
"""Per-store (not per-example) variables: the vocabulary and the unembedding (final-norm
parameters + W_U), written once by `nnsight_codi.lens.unembed.write_static`. Requested as
`unembed`; `token_string` comes with every store that holds lens read-outs or `unembed`, and
`tokenizer_json` (the model's fast tokenizer, for numbers split into several tokens) with lens read-outs."""

STATIC_REQUESTS = ("unembed",)


def step_names(num_latents: int) -> list[str]:
    """Step names of a CODI run with K latents: `['bot', 'latent1', …, 'latentK', 'eot']`."""
    if num_latents < 0:
        raise SchemaError(f"num_latents must be >= 0, got {num_latents}")
    return _step_names(num_latents)


def parse_variables(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Parse `"hidden,kv"` (or a list) into validated names; `None`/"" → the defaults.

    Example:
        >>> parse_variables("hidden, correct")
        ('hidden', 'correct')

    Group names expand (`lens` → `lens_top_ids, lens_top_probs, lens_entropy`; `tuned_lens`
    likewise) and `unembed` (a per-store request, no example dim) is kept as is, last.

        >>> parse_variables("hidden,lens,unembed")
        ('hidden', 'lens_top_ids', 'lens_top_probs', 'lens_entropy', 'unembed')
    """
    if text is None:
        return DEFAULT_VARIABLES
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names:
        return DEFAULT_VARIABLES
    static = [n for n in names if n in STATIC_REQUESTS]
    expanded = [m for n in names if n not in STATIC_REQUESTS for m in LENS_GROUPS.get(n, (n,))]
    if len(static) != len(set(static)):
        raise SchemaError(f"variable(s) requested twice: {', '.join(sorted(set(static)))}")
    return (validate_variables(expanded) if expanded else ()) + tuple(static)


def validate_variables(names: Iterable[str]) -> tuple[str, ...]:
    """Check requested variable names; unknown or duplicated names raise `SchemaError`.

    Automatic variables (`prompt_length`, `complete`) are accepted and dropped.
    """
    names = list(names)
    unknown = [n for n in names if n not in VARIABLES]
    if unknown:
        raise SchemaError(
            f"unknown variable(s) {', '.join(repr(n) for n in unknown)}; "
            f"valid: {', '.join(REQUESTABLE + tuple(LENS_GROUPS) + STATIC_REQUESTS)}")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise SchemaError(f"variable(s) requested twice: {', '.join(dups)}")
    if not names:
        raise SchemaError(f"no variables requested; valid: {', '.join(REQUESTABLE)}")
    return tuple(n for n in names if n not in AUTOMATIC)


def validate_layers(layers: Iterable[int] | None, num_layers: int | None) -> tuple[int, ...]:
    """Check a layer list against a model with `num_layers` blocks (valid layers 0..L).

    `None` means every layer. Negative indices count from the end (-1 = L). Duplicates and
    out-of-range layers raise `SchemaError`. With `num_layers=None` only non-negativity and
    uniqueness can be checked.
    """
    if num_layers is not None and (not isinstance(num_layers, int) or num_layers < 0):
        raise SchemaError(f"num_layers must be a non-negative int, got {num_layers!r}")
    if layers is None:
        if num_layers is None:
            raise SchemaError("give either the layers or the model's number of layers")
        return tuple(range(num_layers + 1))
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
            raise SchemaError(f"layer must be an int, got {layer!r}")
        layer = int(layer)
        if num_layers is not None:
            if not -(num_layers + 1) <= layer <= num_layers:
                raise SchemaError(
                    f"layer {layer} out of range: the model has {num_layers} blocks, so layers "
                    f"are 0..{num_layers} (or -{num_layers + 1}..-1); {LAYER_DOC}")
            layer = layer % (num_layers + 1)
        elif layer < 0:
            raise SchemaError(f"negative layer {layer} needs the model's number of layers")
        out.append(layer)
    if not out:
        raise SchemaError("empty layer list")
    dups = sorted({x for x in out if out.count(x) > 1})
    if dups:
        raise SchemaError(f"layer(s) given twice: {dups}")
    return tuple(out)


def needed_sizes(variables: Iterable[str]) -> tuple[str, ...]:
    """The sized dims (`dim`, `position`, …) that the given variables use, in schema order."""
    used = {d for name in variables for d in VARIABLES[name].dims}
    return tuple(d for d in SIZED_DIMS if d in used)


def uses_position(variables: Iterable[str]) -> bool:
    """True if any variable has a `position` dim (then `prompt_length` must be written)."""
    return any("position" in VARIABLES[n].dims for n in variables)

