"""`nnsight-codi info STORE [--json]`: print a store's schema, sizes and provenance.

Example:
    $ nnsight-codi info out/capture.zarr
    $ nnsight-codi info out/capture.zarr --json | jq .examples
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import OneLineParser, error_line


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `info` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("info", help="describe an activation store",
                              description="Print a store's schema, dims, sizes, completed "
                                          "examples and provenance.")
    p.add_argument("store", help="path of the zarr store")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the summary. A store that cannot be read raises (FileNotFoundError, StoreError): `nnsight-codi`
    prints it as every command does (`nnsight-codi info: error: ...`, exit status 2).
    """
    from nnsight_codi.store.summary import store_summary

    info = store_summary(args.store)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        print(format_summary(info))
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def format_summary(info: dict[str, Any]) -> str:
    """Human-readable text of a `store_summary` dict."""
    prov = info["provenance"]
    ex = info["examples"]
    lines = [
        f"store:      {info['path']}  (schema version {info['schema_version']})",
        f"examples:   {ex['completed']}/{ex['total']} complete  ranges {ex['ranges']}",
        f"model:      {prov.get('model_id')}  revision {prov.get('model_revision')}  "
        f"num_latents {prov.get('num_latents')}",
        f"dataset:    {prov.get('dataset')}",
        f"interventions: {json.dumps(prov.get('interventions'))}",
        f"dtype:      {prov.get('dtype')}",
        f"created:    {prov.get('created')}",
        f"command:    {prov.get('command')}",
        "versions:   " + ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items()),
        "dims:       " + "  ".join(f"{k}={v}" for k, v in info["dims"].items()),
        "variables:",
    ]
    width = max(len(n) for n in info["variables"]) if info["variables"] else 0
    for name, v in info["variables"].items():
        lines.append(f"  {name:<{width}}  ({', '.join(v['dims'])})  {v['dtype']}  "
                     f"{_mb(v['bytes_on_disk'])} on disk, {_mb(v['bytes'])} raw")
    lines.append("coordinates:")
    for name, c in info["coords"].items():
        extra = f"  {c['values']}" if "values" in c else ""
        lines.append(f"  {name} ({', '.join(c['dims'])}) {c['dtype']}{extra}")
    lines.append(f"on disk:    {_mb(info['bytes_on_disk'])}")
    lines.append(f"config:     {json.dumps(prov.get('config'), sort_keys=True)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run `info` standalone: `python -m nnsight_codi.commands.info STORE` (as `nnsight-codi info STORE`)."""
    from ..store.store_errors import StoreError

    parser = OneLineParser(prog="nnsight-codi")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["info", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except (ValueError, OSError, StoreError) as err:  # as `nnsight-codi` prints a user error
        print(error_line("info", err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
