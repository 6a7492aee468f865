"""The offline lm-eval tasks shipped with nnsight-codi (YAML in `nnsight_codi/harness/tasks/`).

| task | data | for |
|---|---|---|
| `nnsight_codi_synthetic` | 200 held-out synthetic problems (seed 1000003) from the model's recorded training distribution | tiny CODI / tiny instruct, any model trained on them |
| `nnsight_codi_gsm8k_local` | GSM8K test lines: the copy shipped with the package (`nnsight_codi/assets/gsm8k/test.jsonl.gz`), or `--metadata gsm8k_file=PATH` | CODI models |

The YAMLs load their data through lm-eval's `custom_dataset` hook (functions below), never through
paths relative to the working directory, so lm-eval's own `--include_path` uses them from any
directory. lm-eval calls the hook with the task's metadata, which its CLI fills with the model args
and `--metadata`; so the synthetic problems follow the distribution recorded with the model
(`codi.json`'s `synthetic_options`, `instruct.json`'s `synthetic_options`), for `--model nnsight-codi
--model_args model=M` as for `--model hf --model_args pretrained=DIR`; a model without a record
gets the generator's default distribution. Metadata keys: `min_steps`, `max_steps`, `value_max`,
`ops` (override the distribution, as `eval`'s flags do), `synthetic_size`, `synthetic_seed`,
`synthetic_file` (a jsonl of question/answer lines instead), `gsm8k_file`.

Example:
    >>> sorted(LOCAL_TASKS)
    ['nnsight_codi_gsm8k_local', 'nnsight_codi_synthetic']
    >>> recorded_synthetic_options("tiny")["max_steps"]
    3
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lm_eval.tasks

from ..data.gsm8k import load_shipped, shipped_file
from ..instruct import INSTRUCT_FILE
from ..models.codi_config import CODI_JSON
from ..models.model_sources import SHIPPED_INSTRUCT, TINY_MODEL_DIR

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
LOCAL_TASKS = ("nnsight_codi_gsm8k_local", "nnsight_codi_synthetic")
SYNTHETIC_SIZE, SYNTHETIC_SEED = 200, 1000003  # held out: training seeds are small integers
PAPER_TASKS = {
    # the paper's benchmarks by lm-eval name (need network); generative variants suit a CoT-steered model
    "gsm8k": "generate_until; the answer is read from the generated text (strict '####' and flexible last-number filters)",
    "gsm8k_cot": "generate_until with CoT exemplars: the CoT-prompt baseline",
    "mmlu_generative": "generate_until over the letter; the loglikelihood `mmlu` scores one forward and cannot "
                       "show generated reasoning, it only measures the steered next-token preference",
    "arc_challenge_chat": "generate_until; `arc_challenge` is loglikelihood-based (same caveat as mmlu)",
    "agieval": "loglikelihood multiple choice (agieval_* subtasks); agieval_math / agieval_sat_math are generative",
}


def _model_dir(spec: Any) -> Path | None:
    """The directory a model spec (or a loaded model) was loaded from, without loading it."""
    if spec is None or spec == "":
        return None
    if not isinstance(spec, (str, Path)):  # a loaded model (`loaded=` in tests and scripts)
        lm = getattr(spec, "_module", spec)
        spec = getattr(getattr(lm, "config", None), "name_or_path", None) or ""
    spec = str(spec)
    shipped = {"tiny": TINY_MODEL_DIR, **SHIPPED_INSTRUCT}
    if spec in shipped:
        return shipped[spec]
    path = Path(spec).expanduser()
    return path if path.is_dir() else None


def recorded_synthetic_options(spec: Any) -> dict[str, Any] | None:
    """The synthetic-problem options a model was trained on, from `codi.json` (`extra`) or
    `instruct.json` beside its weights; None when it has no record (or is a hub id).
    """
    directory = _model_dir(spec)
    if directory is None:
        return None
    for name, read in ((CODI_JSON, lambda d: (d.get("extra") or {}).get("synthetic_options")),
                       (INSTRUCT_FILE, lambda d: d.get("synthetic_options"))):
        path = directory / name
        if path.is_file():
            options = read(json.loads(path.read_text()))
            if options:
                return dict(options)
    return None


def _jsonl(path: str | Path):
    import datasets

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file {path.resolve()} not found")
    return datasets.DatasetDict({"test": datasets.load_dataset("json", data_files=str(path.resolve()),
                                                               split="train")})


def synthetic_options_from(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """`SyntheticOptions` fields for the task: the model's record (`model=` / `pretrained=` /
    `loaded=`), then `min_steps`, `max_steps`, `value_max`, `ops` from the metadata on top.
    """
    from ..data.eval_datasets import synthetic_options

    model = metadata.get("loaded") or metadata.get("model") or metadata.get("pretrained")
    options = dict(recorded_synthetic_options(model) or {})
    for key in ("min_steps", "max_steps"):
        if metadata.get(key) is not None:
            options[key] = int(metadata[key])
    if metadata.get("value_max") is not None:
        options["value_range"] = (0, int(metadata["value_max"]))
    if metadata.get("ops") is not None:
        options["ops"] = str(metadata["ops"])
    return synthetic_options(None, options)


def synthetic_dataset(**metadata: Any):
    """lm-eval `custom_dataset` of `nnsight_codi_synthetic`: `{"test": rows}` with `id`, `question`,
    `answer` (`<< a op b = c >> … #### N`, GSM8K's format).
    """
    import datasets

    from ..data.eval_datasets import load_eval_dataset

    if metadata.get("synthetic_file"):
        return _jsonl(metadata["synthetic_file"])
    ds = load_eval_dataset("synthetic", limit=int(metadata.get("synthetic_size") or SYNTHETIC_SIZE),
                           seed=int(metadata.get("synthetic_seed") or SYNTHETIC_SEED),
                           **synthetic_options_from(metadata))
    rows = {"id": list(ds["id"]), "question": list(ds["question"]),
            "answer": [f"{c} #### {a}" for c, a in zip(ds["cot"], ds["answer"])]}
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)})


def default_gsm8k_file() -> Path:
    """The GSM8K test split shipped with the package (`nnsight_codi/assets/gsm8k/test.jsonl.gz`)."""
    return shipped_file("test")


def gsm8k_local_dataset(**metadata: Any):
    """lm-eval `custom_dataset` of `nnsight_codi_gsm8k_local`: GSM8K jsonl lines (question, answer)."""
    path = metadata.get("gsm8k_file")
    if not path:
        import datasets

        return datasets.DatasetDict({"test": load_shipped("test")})
    return _jsonl(path)


def task_manager(metadata: Mapping[str, Any] | None = None, include_path: str | Path | None = None,
                 include_defaults: bool = True):
    """An lm-eval `TaskManager` that knows the local tasks (and `include_path`'s YAMLs), with
    `metadata` for the datasets (`model=…`, `gsm8k_file=…`, …; lm-eval's CLI passes the model args).

    `include_defaults=False` skips indexing lm-eval's own ~200 task folders (fast, local tasks only).
    """
    paths: list[str | Path] = [str(TASKS_DIR)]
    if include_path:
        paths.append(str(include_path))
    return lm_eval.tasks.TaskManager(include_path=paths, include_defaults=include_defaults, metadata=dict(metadata or {}))
