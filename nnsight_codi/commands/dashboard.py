"""`nnsight-codi dashboard`: a self-contained static HTML page of a capture store (no model needed).

Examples::

    nnsight-codi capture --model tiny --limit 200 --what hidden,attention,answer_pred,answer_gold,correct --out out/a.zarr
    nnsight-codi dashboard out/a.zarr --out out/dashboard          # then open out/dashboard/index.html
    nnsight-codi dashboard out/a.zarr --out out/dashboard --top-k 5 --layer 2 --limit 1000 --json

Per example: the question's tokens, each step's top-1 / top-5 logit-lens tokens (when the store
has lens read-outs; the layer is selectable, the best one by default), selecting a step
highlights its top-K attended tokens over the prompt and the previous latents; gold, prediction,
correct; navigation, a correct/wrong filter and search by id or text. Deep links:
`index.html#ex=ID&step=N&layer=L`.
"""

from __future__ import annotations

import argparse
import time

from .common import emit_json
from .outdir import check_out


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `dashboard` subcommand and its flags; return its parser."""
    p = subparsers.add_parser("dashboard", help="write a static HTML dashboard of a store's attention and lens",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="a capture store (directory)")
    p.add_argument("--out", required=True, help="output directory; the page is OUT/index.html (a dashboard there is replaced; any other "
                        "artifact, e.g. the store itself, is refused)")
    p.add_argument("--top-k", type=int, default=8, help="attended sources shown per step (default: %(default)s)")
    p.add_argument("--layer", type=int, default=None,
                   help="initial logit-lens layer, one of the store's lens layers (default: the layer whose latent "
                        "read-outs are numbers most often)")
    p.add_argument("--limit", type=int, default=None, help="only the first N complete examples")
    p.add_argument("--title", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    return p


def check_lens_layer(ds, layer: int) -> None:
    """A `ValueError` unless `layer` is one of the store's lens read-out layers."""
    if not ("lens_top_ids" in ds and "lens_top_probs" in ds):
        raise ValueError(f"--layer {layer}: the store has no lens read-outs (capture with --what hidden,lens)")
    layers = [int(x) for x in ds["layer"].values]
    if layer not in layers:
        raise ValueError(f"--layer {layer} out of range: the store's lens layers are {_span(layers)}")


def _span(values: list[int]) -> str:
    """`0..4` for a contiguous run, else the list."""
    return f"{values[0]}..{values[-1]}" if values == list(range(values[0], values[-1] + 1)) else str(values)


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi dashboard` from parsed arguments; return the exit code."""
    from ..dashboard import write_dashboard
    from ..store import open_store

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    check_out(args.out, "dashboard")
    start = time.perf_counter()
    ds = open_store(args.store)
    if args.layer is not None:
        check_lens_layer(ds, args.layer)
    info = write_dashboard(ds, args.out, top_k=args.top_k, layer=args.layer, limit=args.limit, title=args.title,
                           progress=not args.json)
    info["seconds"] = round(time.perf_counter() - start, 3)
    if args.json:
        emit_json(info)
    else:
        print(f"{info['examples']} examples → {info['path']} ({info['bytes'] / 1e6:.2f} MB, {info['seconds']:.1f}s)")
        for line in info["missing"]:
            print(f"note: {line}")
    return 0
