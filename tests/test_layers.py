"""The layering of models / tracing / loading, and the old paths of the names that moved between them."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnsight_codi"


def project_imports(file: Path) -> set[str]:
    """Every `nnsight_codi` module `file` imports, module- or function-level, relative imports resolved."""
    module = ".".join(("nnsight_codi",) + file.relative_to(PACKAGE).with_suffix("").parts)
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nnsight_codi")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("nnsight_codi"):
                found.add(name)
    return found


def modules_under(*parts: str) -> list[Path]:
    root = PACKAGE.joinpath(*parts)
    return sorted(root.rglob("*.py")) if root.is_dir() else [root]


@pytest.mark.parametrize("file", modules_under("models"), ids=lambda f: f.name)
def test_models_hold_formats_and_weights_only(file):
    # shims name their new homes as strings, so they import nothing above models
    upward = {m for m in project_imports(file)
              if m.startswith(("nnsight_codi.tracing", "nnsight_codi.loading", "nnsight_codi.commands"))}
    assert not upward, f"{file.name} imports {sorted(upward)}"


@pytest.mark.parametrize("file", modules_under("tracing"), ids=lambda f: f.name)
def test_tracing_does_not_import_loading_or_studies(file):
    upward = {m for m in project_imports(file)
              if m.startswith(("nnsight_codi.loading", "nnsight_codi.commands", "nnsight_codi.capture",
                               "nnsight_codi.interventions", "nnsight_codi.cot", "nnsight_codi.harness"))}
    assert not upward, f"{file.name} imports {sorted(upward)}"


def test_the_library_does_not_import_commands():
    top = {"cli.py", "studies.py", "demo_index.py", "__main__.py"}
    offenders = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        rel = file.relative_to(PACKAGE)
        if rel.parts[0] == "commands" or str(rel) in top:
            continue
        bad = {m for m in project_imports(file) if m.startswith("nnsight_codi.commands")}
        if bad:
            offenders[str(rel)] = sorted(bad)
    assert not offenders


MOVED = {
    "nnsight_codi.models": {"load_model": "nnsight_codi.loading", "load_plain_lm": "nnsight_codi.loading"},
    "nnsight_codi.models.loader": {"load_model": "nnsight_codi.loading", "load_converted": "nnsight_codi.loading",
                                   "resolve_device": "nnsight_codi.models.devices",
                                   "TINY_MODEL_DIR": "nnsight_codi.models.sources"},
    "nnsight_codi.models.checkpoint": {"load_reference_checkpoint": "nnsight_codi.loading"},
    "nnsight_codi.models.lora_interventions": {"LoraCodiModel": "nnsight_codi.tracing.lora",
                                               "BaseMismatchError": "nnsight_codi.models.lora_checkpoint",
                                               "count_requests": "nnsight_codi.tracing.remote",
                                               "load_lora_interventions": "nnsight_codi.loading"},
    "nnsight_codi.cot.remote": {"check_remote": "nnsight_codi.tracing.remote",
                                "load_instruct_model": "nnsight_codi.loading"},
    "nnsight_codi.tracing.hooks": {"run_loop": "nnsight_codi.tracing.loop", "Branch": "nnsight_codi.tracing.loop",
                                   "run_branches": "nnsight_codi.tracing.loop"},
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_warn_and_forward(old):
    module = importlib.import_module(old)
    for name, new in MOVED[old].items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(module, name)
        assert value is getattr(importlib.import_module(new), name)
        assert any(issubclass(w.category, DeprecationWarning) and f"moved to {new}.{name}" in str(w.message)
                   for w in caught), name


def test_the_root_names_point_at_their_homes():
    import nnsight_codi
    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import Branch, run_branches, run_loop

    assert (nnsight_codi.load_model, nnsight_codi.run_loop, nnsight_codi.run_branches, nnsight_codi.Branch) == \
        (load_model, run_loop, run_branches, Branch)


def test_the_model_picks_its_executor(tmp_path):
    from factories import make_reference_checkpoint

    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import DirectExecutor
    from nnsight_codi.tracing.session import SessionExecutor

    codi = load_model("tiny")
    assert isinstance(codi.executor(None), DirectExecutor)
    assert isinstance(codi.executor("local"), SessionExecutor) and codi.executor("local").adapter is None
    assert load_model("tiny", ndif_repo_id="org/tiny-codi").ndif_repo_id == "org/tiny-codi"
    ref = make_reference_checkpoint(tmp_path, "gpt2")
    inter = load_model(ref["path"], base=str(ref["base_dir"]), lora_mode="interventions", ndif_repo_id="org/base")
    assert inter.ndif_repo_id == "org/base"
    for remote in (None, "local"):
        executor = inter.executor(remote)
        assert isinstance(executor, SessionExecutor) and executor.adapter is not None
        assert executor.model is inter.session_model(remote)  # built and weight-checked once per remote
