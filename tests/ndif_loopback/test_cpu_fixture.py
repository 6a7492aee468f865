"""The loopback server's CPU-serving test fixture (`server_env/sitecustomize.py`), checked here without a
server: inert unless asked for, and each patch does what the live suite relies on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

FIXTURE = Path(__file__).resolve().parent / "server_env" / "sitecustomize.py"


def _load(monkeypatch, active: bool) -> ModuleType:
    if active:
        monkeypatch.setenv("NNSIGHT_CODI_NDIF_CPU_PATCHES", "1")
    else:
        monkeypatch.delenv("NNSIGHT_CODI_NDIF_CPU_PATCHES", raising=False)
    before = list(sys.meta_path)
    spec = importlib.util.spec_from_file_location("ndif_cpu_fixture", FIXTURE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    added = [f for f in sys.meta_path if f not in before]
    for finder in added:  # never leave the hook in the client's interpreter
        sys.meta_path.remove(finder)
    module.added = added
    return module


def test_inert_without_its_variable(monkeypatch):
    assert _load(monkeypatch, active=False).added == []
    assert len(_load(monkeypatch, active=True).added) == 1


def test_patches(monkeypatch, tmp_path):
    fixture = _load(monkeypatch, active=False)

    class Remotable:
        @classmethod
        def describe_checkpoint(cls, model_key, dtype):
            return (cls.__name__, model_key, dtype)

        @classmethod
        def max_tp_size(cls, model_key):
            return 2

    remotable = ModuleType("remotable")
    remotable.Remotable = Remotable  # type: ignore[attr-defined]
    fixture._patch_nnsight_remotable(remotable)
    assert Remotable.describe_checkpoint("k", "float32", trust_remote_code=False) == ("Remotable", "k", "float32")
    assert Remotable.max_tp_size("k", trust_remote_code=True) == 2

    calls = []

    class HuggingFaceModel:
        @classmethod
        def from_model_key(cls, model_key, **kwargs):
            calls.append(kwargs)

    hf = ModuleType("hf")
    hf.HuggingFaceModel, hf._ID_CACHE = HuggingFaceModel, {"org/x": "Org/X"}  # type: ignore[attr-defined]
    fixture._patch_nnsight_huggingface(hf)
    HuggingFaceModel.from_model_key("k", dispatch=True, device_map="balanced", max_memory={0: 1}, dtype="float32")
    HuggingFaceModel.from_model_key("k", device=0)
    HuggingFaceModel.from_model_key("k")  # the meta build: untouched
    assert calls == [{"dispatch": True, "dtype": "float32", "device": "cpu"}, {"device": "cpu"}, {}]
    ids = hf._ID_CACHE  # type: ignore[attr-defined]
    assert str(tmp_path) in ids and ids[str(tmp_path)] == str(tmp_path) and ids["org/x"] == "Org/X"
    assert "/no/such/dir" not in ids

    cuda = SimpleNamespace(is_available=lambda: False)
    fixture._patch_torch(SimpleNamespace(cuda=cuda))
    assert cuda.synchronize() is None and cuda.memory_allocated(0) == 0 and not cuda.is_available()
    assert cuda.get_device_properties(0).total_memory == fixture.FAKE_GPU_BYTES
