"""`RunSpec`: the model / dataset / split / seed / limit / batch size / device block every run config shares.

`CaptureConfig`, `SweepConfig` (interventions) and `ExtractConfig` (CoT vectors) derive from it, each with
its own defaults (`run_spec(...)`), so the block's names and types are declared once here and the flags,
config-file keys and fingerprints of each config keep the names they had.

Example:
    >>> from dataclasses import dataclass, fields
    >>> @dataclass
    ... class Config(run_spec(limit=8)):
    ...     coef: float = 1.0
    >>> [f.name for f in fields(Config)], Config().limit, Config().model
    (['model', 'dataset', 'split', 'seed', 'limit', 'batch_size', 'device', 'coef'], 8, 'tiny')
"""

# No `from __future__ import annotations`: `run_spec` copies these annotations as the types themselves.

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class RunSpec:
    """What model runs on which examples, and where.

    Args:
        model: "tiny" (shipped), a converted CODI dir, a checkpoint, a hub id or a plain HF LM.
        dataset: "synthetic", "gsm8k" or a local json/jsonl/parquet file.
        split: split of a hub dataset / file name filter.
        seed: seed of the synthetic problems.
        limit: the first N examples (None: all).
        batch_size: examples per batch.
        device: "cpu", "cuda", "auto", ...
    """

    model: str = "tiny"
    dataset: str = "synthetic"
    split: str = "test"
    seed: int = 1
    limit: int | None = None
    batch_size: int = 32
    device: str = "cpu"


def run_spec(**defaults: Any) -> type[RunSpec]:
    """A `RunSpec` subclass whose fields default to `defaults` (the rest keep `RunSpec`'s), to derive a config from.

    >>> run_spec(colour=1)
    Traceback (most recent call last):
    ...
    ValueError: run_spec: unknown field(s) ['colour']; RunSpec has model, dataset, split, seed, limit, batch_size, device
    """
    fields = dataclasses.fields(RunSpec)
    unknown = sorted(set(defaults) - {f.name for f in fields})
    if unknown:
        raise ValueError(f"run_spec: unknown field(s) {unknown}; RunSpec has {', '.join(f.name for f in fields)}")
    spec = [(f.name, f.type, dataclasses.field(default=defaults.get(f.name, f.default))) for f in fields]
    return dataclasses.make_dataclass("RunSpec", spec, bases=(RunSpec,), namespace={"__module__": __name__,
                                                                                    "__doc__": RunSpec.__doc__})
