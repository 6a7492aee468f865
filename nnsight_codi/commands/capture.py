"""`nnsight-codi capture`: stream a dataset's latent-loop activations into a resumable zarr store.

Examples::

    nnsight-codi capture --model tiny --dataset synthetic --limit 256 --out out/tiny.zarr
    nnsight-codi capture --model tiny --out out/attn.zarr --what hidden,attention,kv --layers 0,2,4 --json
    nnsight-codi capture --model tiny --out out/lens.zarr --what hidden,lens,unembed --lens-k 10
    nnsight-codi capture --model tiny --out out/tuned.zarr --what lens --lens-path out/tuned-lens
    nnsight-codi capture --model tiny --out out/heads.zarr --what hidden,correct --attention-detail head
    nnsight-codi capture --model path/to/hf-lm --positions -3,-2,-1 --what hidden --out out/plain.zarr
    nnsight-codi info out/tiny.zarr

Re-running the same command resumes an interrupted capture (and does nothing on a finished
one); a different configuration into an existing store is refused with what differs.
"""

from __future__ import annotations

import argparse

from .common import (
    add_dataset_args,
    add_loop_args,
    add_model_args,
    emit_json,
    int_list,
    remote_value,
    synthetic_overrides,
)
from .outdir import check_out


def with_attention_detail(variables: tuple[str, ...], detail: str | None) -> tuple[str, ...]:
    """`variables` plus `attention` and, for `detail` "layer"/"head", `attention_layers`/`attention_heads`.

    Example:
        >>> with_attention_detail(("hidden",), "head")
        ('hidden', 'attention', 'attention_heads')
    """
    if detail is None:
        return variables
    extra = ("attention", {"layer": "attention_layers", "head": "attention_heads"}[detail])
    return tuple(variables) + tuple(v for v in extra if v not in variables)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `capture` subcommand and its flags; return its parser."""
    from ..store.schema import DEFAULT_VARIABLES, LENS_GROUPS, REQUESTABLE, STATIC_REQUESTS

    p = subparsers.add_parser("capture", help="capture activations across the latent steps into a zarr store")
    add_model_args(p)
    add_dataset_args(p)
    p.add_argument("--out", required=True,
                   help="store path (a directory, e.g. out/run.zarr); a capture store there with the same "
                        "configuration is resumed (a finished one: nothing to do), one with another configuration "
                        "is refused, and so is any other artifact (a model, a lens, ...)")
    p.add_argument("--what", default=",".join(DEFAULT_VARIABLES),
                   help=f"comma-separated variables from {', '.join(REQUESTABLE)}; groups: "
                        f"{', '.join(f'{g} (= {chr(44).join(v)})' for g, v in LENS_GROUPS.items())}; per store: "
                        f"{', '.join(STATIC_REQUESTS)} (final norm + W_U, for lens analyses without a model) "
                        "(default: %(default)s)")
    p.add_argument("--lens-k", type=int, default=10, help="top-k size of lens read-outs (default: 10)")
    p.add_argument("--lens-path", default=None,
                   help="a tuned-lens directory: lens read-outs are also stored through it (tuned_lens_*)")
    p.add_argument("--step-tokens", type=int, default=48,
                   help="with --what step_decoder (SIM-CoT releases): tokens decoded per step at most (default: 48)")
    p.add_argument("--attention-detail", choices=["layer", "head"], default=None,
                   help="also store attention per block (attention_layers) or per block and head "
                        "(attention_heads); implies attention")
    p.add_argument("--layers", type=int_list, default=None,
                   help="residual layers 0..L to capture (0 = the embeddings, l = block l-1's output; default: all)")
    p.add_argument("--positions", type=int_list, default=None,
                   help="plain LMs only: prompt positions from the end that form the step dim (default: -1)")
    add_loop_args(p)
    p.add_argument("--store-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi capture` from parsed arguments; return the exit code."""
    from ..activation_capture import CaptureConfig, run_capture
    from ..store.schema import parse_variables

    check_out(args.out, "capture")
    config = CaptureConfig(
        model=args.model, dataset=args.dataset, split=args.split, seed=args.seed, limit=args.limit,
        variables=with_attention_detail(parse_variables(args.what), args.attention_detail), layers=args.layers, num_latents=args.num_latents,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, masking=args.masking,
        store_dtype=args.store_dtype, model_dtype=args.dtype, device=args.device, base=args.base,
        remote=remote_value(args.remote), positions=args.positions, ndif_model=args.ndif_model,
        synthetic=synthetic_overrides(args) or None, lora_mode=args.lora_mode, lens_k=args.lens_k,
        lens_path=args.lens_path, step_tokens=args.step_tokens,
    )
    summary = run_capture(args.out, config, progress=not args.json)
    if args.json:
        emit_json(summary)
    else:
        print(f"{summary['examples']} examples in {summary['path']} ({summary['bytes'] / 1e6:.1f} MB, "
              f"{summary['written_now']} written now, {summary['seconds']:.1f}s); inspect with `nnsight-codi info {summary['path']}`")
    return 0
