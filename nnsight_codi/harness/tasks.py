"""The offline lm-eval tasks shipped with nnsight-codi (YAML over local jsonl files).

| task | data | for |
|---|---|---|
| `nnsight_codi_synthetic` | 200 held-out synthetic problems shipped in the package | tiny CODI / tiny instruct |
| `nnsight_codi_gsm8k_local` | local GSM8K lines (default `../shared/data/gsm8k/test.jsonl`) | CODI models |

lm-eval reads `data_files` relative to the working directory, so `task_manager()` renders the
shipped YAMLs into a temporary include directory with absolute data paths (and any overrides).

Example:
    >>> sorted(LOCAL_TASKS)
    ['nnsight_codi_gsm8k_local', 'nnsight_codi_synthetic']
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
LOCAL_TASKS = {
    "nnsight_codi_synthetic": TASKS_DIR / "synthetic_test.jsonl",
    "nnsight_codi_gsm8k_local": Path("../shared/data/gsm8k/test.jsonl"),
}
PAPER_TASKS = {
    # the paper's benchmarks by lm-eval name (need network); generative variants suit a CoT-steered model
    "gsm8k": "generate_until; the answer is read from the generated text (strict '####' and flexible last-number filters)",
    "gsm8k_cot": "generate_until with CoT exemplars: the CoT-prompt baseline",
    "mmlu_generative": "generate_until over the letter; the loglikelihood `mmlu` scores one forward and cannot "
                       "show generated reasoning, it only measures the steered next-token preference",
    "arc_challenge_chat": "generate_until; `arc_challenge` is loglikelihood-based (same caveat as mmlu)",
    "agieval": "loglikelihood multiple choice (agieval_* subtasks); agieval_math / agieval_sat_math are generative",
}


def render_tasks(directory: str | Path, data_files: Mapping[str, str | Path] | None = None) -> Path:
    """Write every local task YAML into `directory` with absolute data paths; return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data_files = dict(data_files or {})
    unknown = sorted(set(data_files) - set(LOCAL_TASKS))
    if unknown:
        raise ValueError(f"--data-file names unknown local task(s) {unknown}; local tasks: {sorted(LOCAL_TASKS)}")
    for name, default in LOCAL_TASKS.items():
        path = Path(data_files.get(name, default)).expanduser().resolve()
        if name in data_files and not path.is_file():
            raise FileNotFoundError(f"data file for {name} not found: {path}")
        text = (TASKS_DIR / f"{name}.yaml").read_text()
        old = "    test: " + ("synthetic_test.jsonl" if name == "nnsight_codi_synthetic" else str(default))
        if old not in text:
            raise AssertionError(f"{name}.yaml: data_files line not found")
        (directory / f"{name}.yaml").write_text(text.replace(old, f"    test: {path}"))
    return directory


def task_manager(data_files: Mapping[str, str | Path] | None = None, include_path: str | Path | None = None,
                 include_defaults: bool = True):
    """An lm-eval `TaskManager` that knows the local tasks (and `include_path`'s YAMLs).

    `include_defaults=False` skips indexing lm-eval's own ~200 task folders (fast, local tasks only).
    """
    from lm_eval.tasks import TaskManager

    rendered = render_tasks(tempfile.mkdtemp(prefix="nnsight_codi_tasks_"), data_files)
    paths = [str(rendered)] + ([str(include_path)] if include_path else [])
    return TaskManager(include_path=paths, include_defaults=include_defaults)


def check_local_data(tasks: list[str], data_files: Mapping[str, str | Path] | None = None) -> None:
    """A local task whose data file is missing fails before the model loads."""
    data_files = dict(data_files or {})
    for name in tasks:
        if name in LOCAL_TASKS:
            path = Path(data_files.get(name, LOCAL_TASKS[name])).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"task {name}: data file {path.resolve()} not found; pass "
                                        f"--data-file {name}=PATH")
