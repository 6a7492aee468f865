"""The package reads in one direction: models → tracing → loading → studies → commands, analyses, runs.

The import graph is read from the source (every `import`, function-level ones included), so a lazy
import cannot hide an upward edge. Deprecated re-exports (`nnsight_codi._moved`) name their targets as
strings and are checked separately: each one warns and forwards.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower layers never import higher ones. Within a layer, units may import each other but form no circle.
LAYERS: list[list[str]] = [
    # The root package imports nothing at import time (`load_model`, `run_loop`, … are named as strings and
    # imported on first use), so it sits at the bottom: `__version__`, and the package object for
    # `nnsight.register` (shipping the package by value to a remote server), are read from anywhere.
    ["nnsight_codi"],
    ["nnsight_codi._moved", "nnsight_codi.steps", "nnsight_codi.stats",
     "nnsight_codi.config_cli", "nnsight_codi.errors", "nnsight_codi.data", "nnsight_codi.tokenization",
     "nnsight_codi.store"],
    ["nnsight_codi.models"],
    ["nnsight_codi.tracing"],
    ["nnsight_codi.loading"],
    ["nnsight_codi.lens", "nnsight_codi.interventions", "nnsight_codi.capture", "nnsight_codi.cot",
     "nnsight_codi.evaluation", "nnsight_codi.instruct", "nnsight_codi.training", "nnsight_codi.probes",
     "nnsight_codi.dashboard", "nnsight_codi.harness"],
    # reporting records the model's shipped name and weights fingerprint in every results.json
    ["nnsight_codi.studies", "nnsight_codi.reporting", "nnsight_codi.demo_index", "nnsight_codi.commands", "nnsight_codi.cli",
     "nnsight_codi.__main__"],
    ["analyses"],
    ["runs"],
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str | None:
    """The layer unit of a dotted module (`nnsight_codi.tracing.loop` → `nnsight_codi.tracing`); a name read
    from the package itself (`from nnsight_codi import load_model`) belongs to its root facade."""
    parts = module.split(".")
    for depth in (2, 1):
        if ".".join(parts[:depth]) in LAYER_OF:
            return ".".join(parts[:depth])
    return None


def _sources() -> list[tuple[str, Path]]:
    files = [*ROOT.glob("nnsight_codi/**/*.py"), *ROOT.glob("analyses/*.py"), *ROOT.glob("runs/*.py")]
    out = []
    for path in sorted(files):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _edges() -> set[tuple[str, str, str]]:
    """(importing unit, imported unit, importing module) for every import between two units."""
    edges = set()
    for module, path in _sources():
        src = _unit(module)
        assert src is not None and (src != "nnsight_codi" or module == "nnsight_codi"), \
            f"{module} is in no layer: add it to LAYERS"
        for target in _imports(module, path):
            dst = _unit(target)
            if dst is not None and dst != src:
                edges.add((src, dst, module))
    return edges


def test_every_module_is_in_a_layer_and_no_import_goes_up():
    upward = sorted(f"{module} imports {dst}" for src, dst, module in _edges() if LAYER_OF[dst] > LAYER_OF[src])
    assert not upward


def test_no_circle_between_units():
    graph: dict[str, set[str]] = {}
    for src, dst, _ in _edges():
        graph.setdefault(src, set()).add(dst)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in graph.get(node, ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    circles = sorted(f"{a} ↔ {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not circles


def test_the_library_never_imports_commands_or_the_cli():
    low = {u for u, i in LAYER_OF.items() if i < LAYER_OF["nnsight_codi.commands"]}
    bad = sorted(f"{m} imports {dst}" for src, dst, m in _edges()
                 if src in low and dst in {"nnsight_codi.commands", "nnsight_codi.cli"})
    assert not bad


def _shims() -> list[tuple[str, str, str]]:
    """(old module, name, new module) for every deprecated re-export."""
    out = []
    for module, path in _sources():
        text = path.read_text()
        if module == "nnsight_codi._moved" or "__getattr__ = moved(__name__" not in text:
            continue
        getter = vars(importlib.import_module(module))["__getattr__"]
        out += [(module, name, new) for name, new in getter.moved_names.items()]
    return out


@pytest.mark.parametrize("old, name, new", _shims())
def test_moved_names_warn_and_forward(old, name, new):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)
    assert any(issubclass(w.category, DeprecationWarning) and f"{new}.{name}" in str(w.message) for w in caught)


def test_the_root_names_point_at_their_homes():
    import nnsight_codi
    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.loop import Branch, run_branches, run_loop

    assert (nnsight_codi.load_model, nnsight_codi.run_loop, nnsight_codi.run_branches, nnsight_codi.Branch) == \
        (load_model, run_loop, run_branches, Branch)
