"""`nnsight-codi sweep CONFIG --out DIR`: a resumable grid of steering conditions vs the unsteered baseline.

CONFIG is a JSON, YAML or TOML file with `SweepConfig` fields, e.g.::

    {"limit": 200, "modes": ["hidden", "kv"], "pairs": "all", "coefs": [-2, -1, -0.5, 0.5, 1, 2],
     "baselines": ["random", "mean", "zero"]}

Killed and started again with the same CONFIG and DIR, it runs only the missing (condition, example)
pairs. `--json` prints the run summary and, per condition, accuracy and the paired-bootstrap
difference from `none`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import emit_json
from .outdir import check_out


def register(subparsers) -> argparse.ArgumentParser:
    """Add the `sweep` subcommand and its flags; return its parser."""
    p = subparsers.add_parser("sweep", help="resumable sweep of steering conditions (condition dim)",
                              description="Run every mode × latent pair × coefficient × baseline of CONFIG into "
                                          "DIR/sweep.zarr, resumably, and compare each with the unsteered baseline.")
    p.add_argument("config", help="sweep config (.json, .yaml or .toml; fields of SweepConfig)")
    p.add_argument("--out", required=True, help="output directory (sweep.zarr, vectors.zarr, table.csv); a sweep there with the same config "
                        "is resumed, one with another config is refused, and so is any other artifact")
    p.add_argument("--device", default=None, help="override the config's device")
    p.add_argument("--batch-size", type=int, default=None, help="override the config's batch size")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi sweep` from parsed arguments; return the exit code."""
    from ..interventions.steering_sweep import SweepConfig, run_sweep
    from ..models.devices import resolve_device
    from ..store.sweep_store import condition_table, open_sweep

    check_out(args.out, "sweep")
    if args.device:
        resolve_device(args.device)  # a flag's error before the config file's
    cfg = SweepConfig.load(args.config)
    if args.device:
        cfg.device = args.device
    if args.batch_size is not None:
        cfg.batch_size = args.batch_size
    cfg.check()
    summary = run_sweep(cfg, args.out, progress=not args.json)
    table = condition_table(open_sweep(args.out))
    table.to_csv(Path(args.out) / "table.csv", index=False)
    summary["significant"] = table[table["significant"]]["condition"].tolist()
    summary["baseline_accuracy"] = float(table.loc[table["condition"] == "none", "accuracy"].iloc[0])
    if args.json:
        summary["table"] = table.to_dict(orient="records")
        emit_json(summary)
    else:
        print(f"{summary['conditions']} conditions × {summary['examples']} examples in {summary['seconds']:.1f}s; "
              f"baseline accuracy {summary['baseline_accuracy']:.3f}; "
              f"{len(summary['significant'])} condition(s) differ significantly: "
              + ", ".join(summary["significant"][:10]))
        print(f"table: {Path(args.out) / 'table.csv'}")
    return 0
