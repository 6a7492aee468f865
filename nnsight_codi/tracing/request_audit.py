"""Audit a serialised nnsight request against NDIF's sandbox whitelist, before it is sent.

NDIF's server (github ndif-team/ndif, `Protector` in its ray `security/protected_environment.py`)
runs a request with `__import__` and the builtins replaced: only whitelisted modules import, only
whitelisted builtins exist. `remote="local"` enforces none of that, so code this package ships by
value (`nnsight.register(nnsight_codi)`) could pass every local test and be refused by NDIF.

`audit_request(blob)` loads a serialised request (`RequestModel.serialize`, what
`count_requests(keep=True)` records) with a recording unpickler — the model is never needed — and
checks every part that is not nnsight's own machinery:

- every global a pickle references (`module.name`: classes, functions, `cloudpickle`'s
  `subimport` of a module) against the deserialisation whitelist;
- every by-value function (the block itself, every function and method shipped by source or
  bytecode): its `import` statements against the run-time whitelist (a relative import never
  resolves on the server), and every name it reads that is neither its global nor its local
  against the builtins whitelist.

References into `nnsight` itself are nnsight's own protocol (the tracer, envoys, `nnsight.save`):
the server runs its own nnsight, so they are a version question (`remote-check`), not the audit's.

Example:
    >>> with count_requests(keep=True) as log:                          # doctest: +SKIP
    ...     run_loop(codi, codi.encode(["1+1?"]), remote="local")
    >>> audit_request(log.blobs[0]).ok                                   # doctest: +SKIP
    True
"""

from __future__ import annotations

import dis
import io
import os
import sys
import sysconfig
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# ---- NDIF's whitelist, as read from github ndif-team/ndif at commit 028db44 --------------------
# (src/services/ray/src/ray/nn/security/protected_environment.py: WHITELISTED_MODULES,
# WHITELISTED_MODULES_DESERIALIZATION, WHITELISTED_BUILTINS). A facts list: update it here only.
# (name, strict): strict means the exact module name; otherwise NDIF accepts any module whose name
# *starts with* the entry (a plain string prefix: "time" also admits "timeit").
NDIF_WHITELIST_COMMIT = "028db44"
RUNTIME_MODULES: tuple[tuple[str, bool], ...] = (
    ("builtins", True), ("torch", False), ("collections", False), ("nnsight.intervention.envoy", False),
    ("time", False), ("numpy", False), ("sympy", False), ("nnterp", False), ("math", False),
    ("einops", False), ("urllib3", False), ("typing", False), ("_operator", True), ("operator", True),
    ("pandas", False), ("enum", False),
)
DESERIALISATION_MODULES: tuple[tuple[str, bool], ...] = (
    ("pickle", False), ("cloudpickle", False), ("copyreg", False), ("nnsight.schema.request", True),
    ("nnsight.modeling.mixins.remoteable", True), ("nnsight.intervention.tracing.base", True),
    ("nnsight.intervention.interleaver", True), ("nnsight.intervention.batching", True),
    ("nnsight.modeling", False), *RUNTIME_MODULES,
)
BUILTINS: frozenset[str] = frozenset("""
BaseExceptionGroup ArithmeticError AssertionError AttributeError BaseException BlockingIOError
BrokenPipeError BufferError BytesWarning ChildProcessError ConnectionAbortedError ConnectionError
ConnectionRefusedError ConnectionResetError DeprecationWarning EOFError Ellipsis EncodingWarning
EnvironmentError Exception False FileExistsError FileNotFoundError FloatingPointError FutureWarning
GeneratorExit IOError ImportError ImportWarning IndentationError IndexError InterruptedError
IsADirectoryError KeyError KeyboardInterrupt LookupError MemoryError ModuleNotFoundError NameError None
NotADirectoryError NotImplemented NotImplementedError OSError OverflowError PendingDeprecationWarning
PermissionError ProcessLookupError RecursionError ReferenceError ResourceWarning RuntimeError
RuntimeWarning StopAsyncIteration StopIteration SyntaxError SyntaxWarning SystemError SystemExit TabError
TimeoutError True TypeError UnboundLocalError UnicodeDecodeError UnicodeEncodeError UnicodeError
UnicodeTranslateError UnicodeWarning UserWarning ValueError Warning ZeroDivisionError
__doc__ __import__ __loader__ __name__ __package__ __spec__ __build_class__
abs aiter all anext any ascii bool bytearray bytes callable chr classmethod complex copyright credits
delattr dict dir divmod enumerate filter float format frozenset getattr hasattr hash hex id int
isinstance issubclass iter len list map max min next object oct ord pow print property range repr
reversed round set setattr slice sorted staticmethod str sum super tuple type vars zip memoryview
globals input eval
""".split())
# -------------------------------------------------------------------------------------------------

CLIENT_PACKAGE = "nnsight"  # nnsight's own protocol objects: checked by version, not by this audit


def allowed(module: str, whitelist: Iterable[tuple[str, bool]] = RUNTIME_MODULES) -> bool:
    """Whether NDIF's import check admits `module` (exact for strict entries, string prefix otherwise)."""
    return any(module == name if strict else module.startswith(name) for name, strict in whitelist)


def stdlib_module(module: str) -> bool:
    """Whether `module` belongs to Python's standard library (of any version; `builtins` included)."""
    return module.split(".")[0] in sys.stdlib_module_names


def interpreter_private(module: str, name: str) -> bool:
    """Whether `module.name` is a standard-library name that is private to one interpreter version.

    A private (`_x`, not dunder) attribute of a standard-library module is an implementation detail
    that comes and goes between Python minors (3.11's `typing._is_callable_members_only` is gone in
    3.12), so a request referencing one loads only on a server running the client's exact Python.

    >>> interpreter_private("typing", "_is_callable_members_only"), interpreter_private("typing", "Any")
    (True, False)
    >>> interpreter_private("torch._utils", "_rebuild_tensor_v2"), interpreter_private("copyreg", "__newobj__")
    (False, False)
    """
    if not stdlib_module(module) or module == "builtins":
        return False
    return any(part.startswith("_") and not (part.startswith("__") and part.endswith("__"))
               for part in name.split("."))


def _stdlib_code(fn: types.FunctionType) -> str | None:
    """Where a by-value function's code comes from when that is the client interpreter's standard
    library (its module or file), else None.
    """
    filename = fn.__code__.co_filename
    if filename.startswith("[") and "] " in filename:  # nnsight's by-source functions: "[name:line] origin"
        filename = filename.split("] ", 1)[1]
    module = getattr(fn, "__module__", None) or ""
    if module != "__main__" and stdlib_module(module):
        return module
    paths = sysconfig.get_paths()
    packages = tuple({paths["purelib"] + os.sep, paths["platlib"] + os.sep})
    if filename.startswith(paths["stdlib"] + os.sep) and not filename.startswith(packages):
        return filename
    return None


def _client(module: str) -> bool:
    return module == CLIENT_PACKAGE or module.startswith(CLIENT_PACKAGE + ".")


@dataclass(frozen=True)
class Finding:
    """One thing NDIF's sandbox would refuse (`module`, `import`, `builtin`), or that another Python
    cannot load (`private`: a name internal to the client's interpreter, `stdlib`: the client's own
    standard-library code shipped by value).
    """

    kind: str
    name: str
    where: str

    def __str__(self) -> str:
        what = {"module": "references module", "import": "imports", "builtin": "uses builtin",
                "private": "references the interpreter-private name",
                "stdlib": "ships by value standard-library code of"}[self.kind]
        return f"{self.where} {what} {self.name!r}"


@dataclass
class AuditReport:
    """What one request carries by value and what of it NDIF's whitelist refuses."""

    findings: list[Finding] = field(default_factory=list)
    references: set[str] = field(default_factory=set)   # every `module.name` the pickle loads
    modules: set[str] = field(default_factory=set)      # modules imported by `subimport`
    functions: list[str] = field(default_factory=list)  # by-value functions (and the block)
    classes: list[str] = field(default_factory=list)    # by-value classes

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self, limit: int = 6) -> str:
        """One line: fine, or the first `limit` findings."""
        if self.ok:
            return (f"request passes NDIF's whitelist ({NDIF_WHITELIST_COMMIT}): {len(self.functions)} by-value "
                    f"functions, {len(self.classes)} classes")
        unique = list(dict.fromkeys(str(f) for f in self.findings))
        more = f" (+{len(unique) - limit} more)" if len(unique) > limit else ""
        return (f"NDIF's sandbox would refuse this request ({NDIF_WHITELIST_COMMIT} whitelist): "
                + "; ".join(unique[:limit]) + more)


class RequestRefusedError(ValueError):
    """A request carries code NDIF's sandbox refuses (a `ValueError`: the CLI prints one line)."""


class _Placeholder:
    """Stands for a persistent id (the server's model, its modules, the interleaver)."""

    def __init__(self, pid: Any) -> None:
        self.pid = pid


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def audit_code(code: types.CodeType, resolved: set[str] | dict, where: str) -> list[Finding]:
    """Findings of one code object (and the functions, lambdas, comprehensions nested in it).

    `resolved`: the names its globals provide; any other global it reads is a builtin lookup.
    """
    found: list[Finding] = []
    for co in _code_objects(code):
        instructions = list(dis.get_instructions(co))
        local = set(co.co_varnames) | set(co.co_cellvars) | set(co.co_freevars)
        for i, ins in enumerate(instructions):
            if ins.opname == "IMPORT_NAME":
                level = instructions[i - 2].argval if i >= 2 and instructions[i - 2].opname == "LOAD_CONST" else 0
                name = ins.argval
                if level:
                    found.append(Finding("import", "." * int(level) + (name or ""), where))
                elif not allowed(name):
                    found.append(Finding("import", name, where))
            elif ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                name = ins.argval
                if ins.opname == "LOAD_NAME" and name in local:
                    continue
                if name not in resolved and name not in BUILTINS:
                    found.append(Finding("builtin", name, where))
    return found


def _assigned_names(code: types.CodeType) -> set[str]:
    """Names a block (module-level code) binds itself: they are not builtin lookups."""
    names: set[str] = set()
    for co in _code_objects(code):
        for ins in dis.get_instructions(co):
            if ins.opname in ("STORE_NAME", "STORE_GLOBAL", "DELETE_NAME", "IMPORT_NAME"):
                names.add(ins.argval.split(".")[0] if ins.opname == "IMPORT_NAME" else ins.argval)
    return names


def audit_request(blob: bytes, compressed: bool = False) -> AuditReport:
    """Load a serialised request with a recording unpickler and check it (see the module doc)."""
    import cloudpickle.cloudpickle as cp
    from nnsight.intervention import serialization as ser

    if compressed:
        import zstandard as zstd

        blob = zstd.ZstdDecompressor().decompress(blob)
    report = AuditReport()
    functions: list[types.FunctionType] = []
    pairs: set[tuple[str, str]] = set()

    def subimport(name: str) -> types.ModuleType:
        report.modules.add(name)
        return cp.subimport(name)

    def load_function(*args: Any) -> types.FunctionType:
        fn = ser._load_function(*args)
        functions.append(fn)
        return fn

    def make_function(*args: Any, **kwargs: Any) -> types.FunctionType:
        fn = cp._make_function(*args, **kwargs)
        functions.append(fn)
        return fn

    def make_skeleton_class(*args: Any, **kwargs: Any) -> type:
        cls = cp._make_skeleton_class(*args, **kwargs)
        report.classes.append(cls.__qualname__)
        return cls

    hooks = {("cloudpickle.cloudpickle", "subimport"): subimport,
             ("nnsight.intervention.serialization", "_load_function"): load_function,
             ("cloudpickle.cloudpickle", "_make_function"): make_function,
             ("cloudpickle.cloudpickle", "_make_skeleton_class"): make_skeleton_class}

    class Recorder(ser.CustomCloudUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            report.references.add(f"{module}.{name}")
            pairs.add((module, name))
            if (module, name) in hooks:
                return hooks[(module, name)]
            return super().find_class(module, name)

        def persistent_load(self, pid: Any) -> Any:
            return _Placeholder(pid)

    _tracer, (source, glbls, variables) = Recorder(io.BytesIO(blob), {}).load()

    for module, name in sorted(pairs):
        if _client(module):
            continue
        if interpreter_private(module, name):
            report.findings.append(Finding("private", f"{module}.{name}", "the request"))
            continue
        if module == "builtins":
            if name not in BUILTINS:  # NDIF's importer hands pickle its safe builtins only
                report.findings.append(Finding("builtin", name, "the request"))
            continue
        if not allowed(module, DESERIALISATION_MODULES):
            report.findings.append(Finding("module", f"{module}.{name}", "the request"))
    for name in sorted(report.modules):
        if not _client(name) and not allowed(name, DESERIALISATION_MODULES):
            report.findings.append(Finding("module", name, "the request"))

    block = compile(source, "<request block>", "exec")
    report.functions.append("<block>")
    report.findings += audit_code(block, set(glbls) | set(variables) | _assigned_names(block), "the traced block")
    for fn in functions:
        label = f"function {fn.__qualname__}"
        report.functions.append(fn.__qualname__)
        origin = _stdlib_code(fn)
        if origin:
            report.findings.append(Finding("stdlib", origin, label))
            continue
        report.findings += audit_code(fn.__code__, set(fn.__globals__), label)
    return report


def check_request(blob: bytes, compressed: bool = False) -> AuditReport:
    """`audit_request`, raising `RequestRefusedError` (one line) when NDIF would refuse the request."""
    report = audit_request(blob, compressed)
    if not report.ok:
        raise RequestRefusedError(report.summary() + " — ship torch-only code and plain tensors by value "
                                 "(no typing.Protocol subclasses or other standard-library internals)")
    return report
