"""`nnsight-codi lm-eval` is lm-eval's own command line: run beside lm-eval's CLI with its `hf` model on
the same tiny BPE GPT-2, from a directory that is not the checkout, both write lm-eval's files
(`<out>/<model>/results_<time>.json`, `samples_<task>_<time>.jsonl`) with the same schema and the
same generations; the shipped task YAMLs work through lm-eval's own `--include_path`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hf_parity import make_bpe_gpt2  # noqa: E402

from nnsight_codi.cli import main  # noqa: E402
from nnsight_codi.harness.tasks import TASKS_DIR  # noqa: E402

COMMON = ["--tasks", "nnsight_codi_synthetic", "--limit", "3", "--gen_kwargs", "max_gen_toks=6",
          "--batch_size", "2", "--seed", "1", "--log_samples", "--metadata", "synthetic_size=10"]


@pytest.fixture
def local_tasks_only(monkeypatch):
    """lm-eval indexes its ~200 stock task folders per run (~15 s here); these tests use local tasks only."""
    import lm_eval.tasks

    class LocalTaskManager(lm_eval.tasks.TaskManager):
        def __init__(self, *args, **kwargs):
            kwargs["include_defaults"] = False
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", LocalTaskManager)


def _files(out: Path) -> tuple[dict, list[dict]]:
    results = list(out.glob("*/results_*.json"))
    samples = list(out.glob("*/samples_nnsight_codi_synthetic_*.jsonl"))
    assert len(results) == 1 and len(samples) == 1, list(out.rglob("*"))
    return json.loads(results[0].read_text()), [json.loads(line) for line in samples[0].read_text().splitlines()]


def test_same_files_as_lm_evals_own_cli(tmp_path, monkeypatch, capsys, local_tasks_only):
    pytest.importorskip("accelerate", reason="lm-eval's hf model needs accelerate")
    from lm_eval.__main__ import cli_evaluate

    model = make_bpe_gpt2(tmp_path / "gpt2")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)  # data paths never depend on the working directory
    monkeypatch.setattr(sys, "argv", ["lm-eval", "run", "--model", "hf", "--model_args", f"pretrained={model}",
                                      "--include_path", str(TASKS_DIR), "--output_path", str(tmp_path / "hf"),
                                      *COMMON])
    cli_evaluate()  # lm-eval's own CLI, its default --device cuda:0 (falls back to the CPU)
    assert main(["lm-eval", "--model_args", f"model={model}", "--output_path", str(tmp_path / "ours"),
                 *COMMON]) == 0
    assert "nnsight_codi_synthetic" in capsys.readouterr().out  # lm-eval's table
    (theirs, their_samples), (ours, our_samples) = _files(tmp_path / "hf"), _files(tmp_path / "ours")
    assert set(ours) == set(theirs)
    for key in ("results", "configs", "versions", "n-shot", "n-samples", "higher_is_better"):
        assert set(ours[key]) == set(theirs[key]) == {"nnsight_codi_synthetic"}, key
    assert ours["config"]["model"] == "nnsight-codi" and theirs["config"]["model"] == "hf"
    assert ours["n-samples"] == theirs["n-samples"]
    assert len(our_samples) == len(their_samples) == 3
    for a, b in zip(sorted(our_samples, key=lambda r: r["doc_id"]), sorted(their_samples, key=lambda r: r["doc_id"])):
        assert set(a) == set(b)
        for key in ("doc", "target", "arguments", "resps", "filtered_resps", "acc"):
            assert a[key] == b[key], key
    assert ours["results"]["nnsight_codi_synthetic"]["acc,none"] == theirs["results"]["nnsight_codi_synthetic"][
        "acc,none"]


def test_user_errors_are_one_line(capsys, local_tasks_only):
    assert main(["lm-eval", "--model_args", "model=tiny", "--tasks", "nnsight_codi_synthetic", "--nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nnsight-codi lm-eval: error: unrecognized arguments: --nope" in err
    assert main(["lm-eval", "--model_args", "model=tiny,conditon=single:2:4", "--tasks", "nnsight_codi_synthetic",
                 "--limit", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown nnsight-codi model arg(s) ['conditon']" in err and "condition" in err
