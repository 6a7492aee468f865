"""Arguments and helpers shared by the commands that load a model or a dataset."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..loading import load_codi_model
from ..models.devices import DTYPES
from ..steps import parse_step
from ..tracing.remote import remote_value


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Add the model flags (`--model`, `--base`, `--device`, `--dtype`, `--lora-mode`)."""
    parser.add_argument("--model", default="tiny",
                        help="'tiny' (shipped), a converted CODI dir, a CODI checkpoint file/dir, a known hub id "
                             "(zen-E/CODI-gpt2, …) or a plain HF LM (default: tiny)")
    parser.add_argument("--base", default=None, help="base model (hub id or local HF dir) for raw CODI checkpoints")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="model dtype (default: float32)")
    parser.add_argument("--lora-mode", default="merged", choices=["merged", "interventions"],
                        help="reference CODI checkpoints: merge LoRA into the weights (default), or run the "
                             "checkpoint as its base model + LoRA as nnsight interventions — with --remote ndif "
                             "this runs on the base model NDIF hosts (registry base or --base hub id)")


def add_numerics_arg(parser: argparse.ArgumentParser) -> None:
    """Add the `--numerics` flag (default or the reference code's arithmetic)."""
    parser.add_argument("--numerics", default="default", choices=["default", "reference"],
                        help="reference: the reference code's arithmetic in --dtype (LoRA unmerged, computed in "
                             "--dtype as peft does; buffers cast as model.to(dtype)); needs a reference CODI "
                             "checkpoint, implies --lora-mode interventions (default: merged/--lora-mode)")


def add_dataset_args(parser: argparse.ArgumentParser) -> None:
    """Add the dataset flags and the synthetic difficulty flags."""
    parser.add_argument("--dataset", default="synthetic",
                        help="'synthetic', 'gsm8k' (Hub when online, else the shipped copy) or a local json/jsonl/parquet file (default: synthetic)")
    parser.add_argument("--split", default="test", help="split for hub datasets / file name filter (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N examples")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic problems (default: 1)")
    group = parser.add_argument_group("synthetic difficulty (default: the distribution the model was trained on)")
    group.add_argument("--min-steps", type=int, default=None, help="fewest operations per problem")
    group.add_argument("--max-steps", type=int, default=None, help="most operations per problem (up to 4 and more)")
    group.add_argument("--value-max", type=int, default=None, help="largest operand or intermediate value")
    group.add_argument("--ops", default=None, help="operations after the opening, a subset of '+-*/'")


def synthetic_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The synthetic difficulty flags that were given, as `SyntheticOptions` fields."""
    out: dict[str, Any] = {}
    for name in ("min_steps", "max_steps", "ops"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    if getattr(args, "value_max", None) is not None:
        out["value_range"] = (0, args.value_max)
    return out


def add_loop_args(parser: argparse.ArgumentParser) -> None:
    """Add the latent-loop flags (latents, batch size, answer tokens, masking, remote)."""
    parser.add_argument("--num-latents", type=int, default=None, help="latent iterations K (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=256, help="bound on answer tokens (default: 256)")
    parser.add_argument("--masking", choices=["exact", "reference"], default="exact",
                        help="exact: masks + positions on every call (batched == one-at-a-time); "
                             "reference: the reference code's unmasked latent/decoding calls")
    parser.add_argument("--remote", default=None,
                        help="run as an nnsight session: 'local' (serialised like NDIF) or 'ndif' (remote=True)")
    parser.add_argument("--ndif-model", default=None,
                        help="with --remote ndif: hub id of the merged CODI LM deployed on NDIF")


def int_list(text: str) -> tuple[int, ...]:
    """Argparse type: comma-separated integers (`"0,4,12"` → `(0, 4, 12)`)."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def step_arg(text: str):
    """Argparse type: a step as an index or a name (`"3"` → 3, `"latent3"`, `"eot"`), checked for form."""
    try:
        return parse_step(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


# The least value of each count flag, by its dest; every command's flags are checked against it before any work.
MINIMUM = {"limit": 1, "batch_size": 1, "max_new_tokens": 1, "num_latents": 0, "lens_k": 1, "top_k": 1,
           "reference_limit": 1, "examples": 0, "train_batch": 1, "steps": 1, "checkpoint_freq": 1}


def check_minimums(args: argparse.Namespace) -> None:
    """A `ValueError` naming the first count flag below its `MINIMUM` (flags not given are None and pass).

    Example:
        >>> check_minimums(argparse.Namespace(limit=0))
        Traceback (most recent call last):
        ...
        ValueError: --limit must be >= 1, got 0
    """
    for dest, low in MINIMUM.items():
        value = getattr(args, dest, None)
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            raise ValueError(f"--{dest.replace('_', '-')} must be >= {low}, got {value}")


def load_codi(args: argparse.Namespace):
    """Load `--model` (with `--device/--dtype/--base/--lora-mode`, and `--ndif-model` if given) as a CODI model.

    With `--lora-mode interventions` and `--remote`, the (hosted) base model's weights are checked
    against the checkpoint here, before any work.
    """
    codi = load_codi_model(args.model, args.device, args.dtype, args.base, getattr(args, "lora_mode", "merged"),
                           getattr(args, "numerics", "default"), ndif_repo_id=getattr(args, "ndif_model", None))
    remote = remote_value(getattr(args, "remote", None))
    if remote:
        codi.executor(remote)  # base + LoRA interventions: one small trace, the weight check of the (hosted) base
    return codi


JSON_STREAMS: list[Any] = []
"""Where `emit_json` writes while a remote command's other output goes to stderr (`cli.json_on_stdout`)."""


def emit_json(data: Any) -> None:
    """Print `data` to stdout as indented JSON (non-JSON values as strings)."""
    out = JSON_STREAMS[-1] if JSON_STREAMS else sys.stdout
    json.dump(data, out, indent=2, default=str)
    out.write("\n")
    out.flush()
