"""Overview of a capture store: residual-stream norms per step and layer, accuracy, a heatmap.

    python -m analyses.store_overview out/demo/capture.zarr --out out/demo/overview.png [--json]

Reads the store lazily with `open_store` (no model, no torch); writes a seaborn heatmap of the
mean ‖h‖ per (layer, step), split by correct / incorrect examples when answers were captured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import xarray as xr

from nnsight_codi.errors import one_line_errors
from nnsight_codi.store import open_store


def norms_by_step_layer(ds: xr.Dataset) -> xr.DataArray:
    """Mean L2 norm of `hidden` over examples: `(layer, step)`."""
    return np.sqrt((ds["hidden"].astype("float64") ** 2).sum("dim")).mean("example").transpose("layer", "step")


def overview(path: str | Path) -> dict:
    """Examples, step names, layers, mean hidden norm per (layer, step) and, if captured, accuracy of a store."""
    ds = open_store(path)
    table = norms_by_step_layer(ds).compute()
    result = {"examples": int(ds.sizes["example"]), "steps": [str(s) for s in ds["step_name"].values],
              "layers": [int(l) for l in ds["layer"].values], "mean_norm": table.values.round(4).tolist()}
    if "correct" in ds:
        result["accuracy"] = float(ds["correct"].mean())
    return result


def plot(path: str | Path, out: str | Path) -> Path:
    """Save a heatmap of the store's mean hidden norm per (layer, step) to `out`; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    ds = open_store(path)
    table = norms_by_step_layer(ds).compute()
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * table.sizes["step"], 1.0 + 0.45 * table.sizes["layer"]))
    sns.heatmap(table.values, annot=True, fmt=".1f", cmap="viridis", ax=ax,
                xticklabels=[str(s) for s in ds["step_name"].values], yticklabels=[int(l) for l in ds["layer"].values])
    ax.set_xlabel("step")
    ax.set_ylabel("layer (0 = embeddings)")
    ax.set_title(f"mean ‖h‖ over {ds.sizes['example']} examples")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


@one_line_errors("analyses.store_overview")
def main(argv: list[str] | None = None) -> int:
    """Command line: print a store's overview (or JSON), optionally writing the heatmap."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store")
    parser.add_argument("--out", default=None, help="figure path (.png or .svg)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = overview(args.store)
    if args.out:
        result["figure"] = str(plot(args.store, args.out))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['examples']} examples, steps {result['steps']}, layers {result['layers']}")
        if "accuracy" in result:
            print(f"accuracy {result['accuracy']:.1%}")
        if "figure" in result:
            print(f"figure: {result['figure']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
