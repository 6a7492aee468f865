"""The package reads in one direction: models → tracing → loading → studies → commands, analyses, runs.

The import graph is read from the source (every `import`, function-level ones included, and every
`importlib.import_module(...)` / `__import__(...)` whose module is written in the call), so neither a lazy
import nor a string import can hide an upward edge. In the package, a string import whose module is only
known at run time, and any use of `sys.path`, must be listed below with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layer 4 (the studies in the library) in sub-layers: a unit imports only units of its own or a lower sub-layer.
LAYER4: dict[str, list[str]] = {
    # read-outs, scoring and chat prompts over one model run; none imports another layer-4 unit
    "4a read-outs": ["nnsight_codi.lens", "nnsight_codi.evaluation", "nnsight_codi.instruct", "nnsight_codi.probes",
                     "nnsight_codi.dashboard"],
    # step hooks and conditions (a steered capture builds its hooks from them)
    "4b interventions": ["nnsight_codi.interventions"],
    # a dataset through the model: capture stores (with lens read-outs and steering hooks) and training
    "4c runs": ["nnsight_codi.activation_capture", "nnsight_codi.training"],
    # the intervention sweep: a driver (a reference capture, then every condition), a unit of its own
    "4d sweep": ["nnsight_codi.interventions.steering_sweep"],
    # CoT steering vectors of instruct LMs, built on the interventions' conditions
    "4e cot": ["nnsight_codi.cot"],
    # the lm-eval model, over all of the above
    "4f harness": ["nnsight_codi.harness"],
}
SUBLAYER_OF = {unit: i for i, units in enumerate(LAYER4.values()) for unit in units}

# Lower layers never import higher ones. Within a layer, units may import each other but form no circle.
LAYERS: list[list[str]] = [
    # The root package imports nothing at import time (`load_model`, `run_loop`, … are named as strings and
    # imported on first use), so it sits at the bottom: `__version__`, and the package object for
    # `nnsight.register` (shipping the package by value to a remote server), are read from anywhere.
    ["nnsight_codi"],
    ["nnsight_codi.steps", "nnsight_codi.stats", "nnsight_codi.predictions", "nnsight_codi.runspec",
     "nnsight_codi.config_cli", "nnsight_codi.errors", "nnsight_codi.data", "nnsight_codi.tokenization",
     "nnsight_codi.store"],
    ["nnsight_codi.models"],
    ["nnsight_codi.tracing"],
    ["nnsight_codi.loading"],
    # the studies in the library, in the sub-layers of LAYER4 below
    [unit for sub in LAYER4.values() for unit in sub],
    # reporting records the model's shipped name and weights fingerprint in every results.json
    ["nnsight_codi.studies", "nnsight_codi.reporting", "nnsight_codi.demo_index", "nnsight_codi.commands", "nnsight_codi.cli",
     "nnsight_codi.__main__"],
    ["analyses"],
    ["runs"],
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str | None:
    """The layer unit of a dotted module (`nnsight_codi.tracing.loop` → `nnsight_codi.tracing`; a module that is a
    unit of its own, such as `nnsight_codi.interventions.steering_sweep`, is itself); a name read from the package itself
    (`from nnsight_codi import load_model`) belongs to its root facade."""
    parts = module.split(".")
    for depth in (3, 2, 1):
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


# Package modules that import a module named only at run time (`importlib.import_module(name)`), and why.
RUNTIME_IMPORTS = {
    # The root's lazy re-exports (`_LAZY`); each target is checked by test_the_root_names_point_at_their_homes.
    "nnsight_codi": "lazy re-exports of load_model, run_loop, ... so `import nnsight_codi` imports nothing",
    "nnsight_codi.studies": "a study's module is named by its registration and lives outside the package",
}
# Package modules that read or change `sys.path`, and why.
SYS_PATH_USERS: dict[str, str] = {}
_IMPORT_CALLS = {"import_module", "__import__"}


def _string_import(call: ast.Call, package: str) -> str | None:
    """The module a string import names (`""` when only known at run time), or None if `call` is no import.

    A constant (`"nnsight_codi.x"`) or the constant start of an f-string (`f"nnsight_codi.commands.{name}"`
    → `nnsight_codi.commands`) is read; a leading dot is relative to the importing package.
    """
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in _IMPORT_CALLS or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        text = arg.value
    elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = str(arg.values[0].value)
        text = prefix[: prefix.rfind(".") + 1]  # up to the last dot: the package the run-time name is in
    else:
        return ""
    if text.startswith("."):
        dots = len(text) - len(text.lstrip("."))
        anchor = package.split(".")[: len(package.split(".")) - dots + 1]
        text = ".".join([*anchor, *([text.lstrip(".")] if text.lstrip(".") else [])])
    return text.rstrip(".")


def _imports(module: str, path: Path, text: str | None = None) -> set[str]:
    """Every module `module` imports: statements, and string imports whose module is written in the call."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and (target := _string_import(node, package)):
            found.add(target)
    return found


def _runtime_imports_and_sys_path(module: str, path: Path, text: str | None = None) -> list[str]:
    """What in `module` imports a module named only at run time, or uses `sys.path` (one line each)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text)):
        if isinstance(node, ast.Call) and _string_import(node, package) == "":
            found.append(f"{module}:{node.lineno} imports a module named at run time")
        elif isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                and node.value.id == "sys":
            found.append(f"{module}:{node.lineno} uses sys.path")
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
            found.append(f"{module}:{node.lineno} uses sys.path")
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


def test_layer4_units_import_only_their_own_or_lower_sublayers():
    upward = sorted(f"{module} imports {dst}" for src, dst, module in _edges()
                    if src in SUBLAYER_OF and dst in SUBLAYER_OF and SUBLAYER_OF[dst] > SUBLAYER_OF[src])
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


def test_the_package_imports_no_module_named_at_run_time_and_leaves_sys_path_alone():
    found = [line for module, path in _sources() if module.split(".")[0] == "nnsight_codi"
             for line in _runtime_imports_and_sys_path(module, path)]
    kinds = {"imports a module named at run time": RUNTIME_IMPORTS, "uses sys.path": SYS_PATH_USERS}
    unexplained = [line for line in found
                   if not any(line.endswith(kind) and line.split(":")[0] in allowed for kind, allowed in kinds.items())]
    assert not unexplained
    stale = sorted(f"{module}: {kind}" for kind, allowed in kinds.items() for module in allowed
                   if not any(line.split(":")[0] == module and line.endswith(kind) for line in found))
    assert not stale, f"allow-listed but no longer needed (delete the entry): {stale}"


def test_a_sublayer_edge_upward_is_seen():
    fake = ROOT / "nnsight_codi" / "lens" / "fake.py"
    found = _imports("nnsight_codi.lens.fake", fake, "from ..training.encode import collate\nfrom ..probes import x\n")
    units = {_unit(m) for m in found} - {None}
    assert units == {"nnsight_codi.training", "nnsight_codi.probes"}
    assert [u for u in sorted(units) if SUBLAYER_OF[u] > SUBLAYER_OF["nnsight_codi.lens"]] == ["nnsight_codi.training"]


def test_no_two_package_modules_share_a_file_name():
    names: dict[str, list[str]] = {}
    for path in sorted(ROOT.glob("nnsight_codi/**/*.py")):
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    shared = {name: paths for name, paths in names.items() if len(paths) > 1}
    assert not shared


def test_string_imports_and_sys_path_edits_are_seen():
    fake = ROOT / "nnsight_codi" / "tracing" / "fake.py"
    src = (
        "import importlib, sys\n"
        "importlib.import_module('nnsight_codi.commands.steer')\n"
        "__import__('nnsight_codi.studies')\n"
        "importlib.import_module(f'..lens.{name}', __name__)\n"
        "importlib.import_module(f'nnsight_codi.training.{name}')\n"
        "importlib.import_module(name)\n"
        "sys.path.insert(0, '/x')\n"
    )
    found = _imports("nnsight_codi.tracing.fake", fake, src)
    assert {"nnsight_codi.commands.steer", "nnsight_codi.studies", "nnsight_codi.lens",
            "nnsight_codi.training"} <= found
    upward = {_unit(m) for m in found if _unit(m) and LAYER_OF[_unit(m)] > LAYER_OF["nnsight_codi.tracing"]}
    assert upward == {"nnsight_codi.commands", "nnsight_codi.studies", "nnsight_codi.lens", "nnsight_codi.training"}
    assert _runtime_imports_and_sys_path("nnsight_codi.tracing.fake", fake, src) == [
        "nnsight_codi.tracing.fake:6 imports a module named at run time", "nnsight_codi.tracing.fake:7 uses sys.path"]


def test_the_root_names_point_at_their_homes():
    import nnsight_codi
    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.branches import Branch, run_branches
    from nnsight_codi.tracing.loop import run_loop

    assert (nnsight_codi.load_model, nnsight_codi.run_loop, nnsight_codi.run_branches, nnsight_codi.Branch) == \
        (load_model, run_loop, run_branches, Branch)


def test_a_deprecation_warning_from_the_project_fails_the_tests():
    import warnings

    for module in ("nnsight_codi.tracing.loop", "analyses.steering", "runs.lens_study"):
        with pytest.raises(DeprecationWarning):
            warnings.warn_explicit("old path", DeprecationWarning, f"{module.replace('.', '/')}.py", 1, module=module)
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters: another library's is only reported
        warnings.warn_explicit("old path", DeprecationWarning, "somelib/x.py", 1, module="somelib.x")
    assert [str(w.message) for w in caught] == ["old path"]
