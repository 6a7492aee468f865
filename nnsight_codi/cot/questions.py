"""Question sets for CoT vectors: the paper's mix (network), a local file, or synthetic problems.

- `"paper"`: Zhang & Viteri's extraction mix, built through `datasets` (needs network):
  BIG-bench Lite (3 questions per task, `tasksource/bigbench`), MMLU dev (2 per subject,
  `cais/mmlu`), GSM8K train (100, `openai/gsm8k`).
- a local `.json`/`.jsonl`/`.parquet` file or `gsm8k` (`data.sources.load_eval_dataset`);
- `"synthetic"`: the seeded arithmetic word problems (`SyntheticOptions` fields as options);
  splits use disjoint seeds (`train` for extraction, `dev` for the grid, `test` for the report).

Example:
    >>> ds = load_questions("synthetic", split="dev", limit=2)
    >>> {"id", "question", "answer"} <= set(ds.column_names), list(ds["id"])
    (True, ['dev-syn-7000001-0', 'dev-syn-7000001-1'])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from datasets import Dataset

SPLIT_SEEDS = {"train": 0, "dev": 1, "test": 2}
BIG_BENCH_LITE = (
    "auto_debugging", "bbq_lite_json", "code_line_description", "conceptual_combinations",
    "conlang_translation", "emoji_movie", "formal_fallacies_syllogisms_negation", "hindu_knowledge",
    "known_unknowns", "language_identification", "linguistics_puzzles", "logic_grid_puzzle",
    "logical_deduction", "misconceptions_russian", "novel_concepts", "operators",
    "parsinlu_reading_comprehension", "play_dialog_same_or_different", "repeat_copy_logic",
    "strange_stories", "strategyqa", "symbol_interpretation", "vitaminc_fact_verification", "winowhy",
)


def synthetic_seed(split: str, seed: int) -> int:
    """The generator seed of a synthetic split (disjoint per split and per `seed`)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"synthetic split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}")
    return 7_000_000 + 1000 * int(seed) + SPLIT_SEEDS[split]


def load_questions(spec: str, split: str = "train", limit: int | None = None, seed: int = 0, **options: Any):
    """A `datasets.Dataset` with `id`, `question` (and `answer` where the source has one)."""
    from ..data.eval_datasets import load_eval_dataset

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if spec == "synthetic":
        from ..data.synthetic import generate_problems

        ds = generate_problems(limit or 200, seed=synthetic_seed(split, seed), **options)
        return ds.remove_columns("id").add_column("id", [f"{split}-{i}" for i in ds["id"]])
    if spec == "paper":
        return paper_mix(limit)
    hub_split = {"dev": "train", "train": "train"}.get(split, split) if spec.startswith("gsm8k") else split
    return load_eval_dataset(spec, split=hub_split, limit=limit, seed=seed)


def _rows(ds: Dataset) -> Iterable[dict[str, Any]]:
    """The rows of `ds` as dicts (`datasets` leaves `Dataset.__iter__` unannotated)."""
    return cast("Iterable[dict[str, Any]]", ds)


def paper_mix(limit: int | None = None, bbl_per_task: int = 3, mmlu_per_subject: int = 2, gsm8k: int = 100):
    """The paper's extraction questions (needs network): BIG-bench Lite, MMLU dev, GSM8K train."""
    from datasets import Dataset, load_dataset

    rows: list[dict[str, str]] = []
    for task in BIG_BENCH_LITE:
        ds = cast(Dataset, load_dataset("tasksource/bigbench", task, split="train"))
        for i, ex in enumerate(_rows(ds.select(range(min(bbl_per_task, len(ds)))))):
            rows.append({"id": f"bbl-{task}-{i}", "question": ex["inputs"], "answer": str(ex["targets"][0])})
    mmlu = cast(Dataset, load_dataset("cais/mmlu", "all", split="dev"))
    seen: dict[str, int] = {}
    for ex in _rows(mmlu):
        subject = ex["subject"]
        if seen.get(subject, 0) >= mmlu_per_subject:
            continue
        seen[subject] = seen.get(subject, 0) + 1
        choices = " ".join(f"{'ABCD'[j]}. {c}" for j, c in enumerate(ex["choices"]))
        rows.append({"id": f"mmlu-{subject}-{seen[subject]}", "question": f"{ex['question']} {choices}",
                     "answer": "ABCD"[ex["answer"]]})
    g = cast(Dataset, load_dataset("openai/gsm8k", "main", split="train")).select(range(gsm8k))
    rows += [{"id": f"gsm8k-train-{i}", "question": ex["question"], "answer": ex["answer"]} for i, ex in enumerate(_rows(g))]
    ds = Dataset.from_list(rows)
    return ds.select(range(min(limit, len(ds)))) if limit else ds
