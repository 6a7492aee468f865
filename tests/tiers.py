"""Test tiers, given by where a test lives (tests/conftest.py applies them; a new file gets its directory's
tier, and a module may set its own with `pytestmark = pytest.mark.<tier>`). Run one with `-m unit`,
`-m "integration and not slow"`, ...
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

#   unit:        no model: stores (a resume test may kill a writer subprocess), data, stats, parsers, the
#                import architecture.
#   integration: the library on a (tiny or hand-built) model, or one subprocess: everything else.
#   acceptance:  a study, a runs/ script, the console or a served model end to end.
TIERS = ("unit", "integration", "acceptance")
UNIT = {"store", "data", "test_architecture.py", "test_stats.py", "test_tokenization.py", "test_config_files.py",
        "test_cli_guards.py", "test_tiers.py"}
ACCEPTANCE = {"test_demo_studies.py", "test_run_scripts.py", "ndif_loopback", "test_tutorials.py", "test_docs_site.py"}
# slow: 20 s or more of one test (setup included) on a 2-core machine, measured with --durations; a module
# name marks all its tests (their shared fixture is the cost).
SLOW = {"test_source_comparison.py", "test_planted_signal.py", "test_demo_studies.py",
        "test_run_scripts.py", "ndif_loopback", "test_tutorials.py", "test_docs_site.py",
        "test_cot_fork.py::test_forked_grid_equals_unforked",
        "test_cot_synthetic_distribution.py::test_eval_scores_the_tiny_instruct_model_on_its_distribution",
        "test_cot_synthetic_distribution.py::test_extract_records_the_distribution_and_refuses_another_on_resume",
        "test_attention_analysis.py::test_study_run_on_the_tiny_model",
        "test_cot_cli.py::test_extract_sweep_eval",
        "test_cot_vectors.py::test_last_prompt_vector_equals_independent_computation",
        "test_torch_free.py::test_attention_runs_and_reports_without_torch",
        "test_torch_free.py::test_store_overview_runs_without_torch",
        "test_torch_free.py::test_patching_runs_and_reports_without_torch",
        "test_torch_free.py::test_cot_vectors_runs_without_torch"}


def tier_of(relative: Path) -> str:
    """The tier of a test file from its path under tests/ (`store/test_x.py` → unit)."""
    parts = set(relative.parts)
    if parts & ACCEPTANCE:
        return "acceptance"
    if parts & UNIT:
        return "unit"
    return "integration"
