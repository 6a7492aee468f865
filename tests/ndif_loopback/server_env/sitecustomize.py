"""TEST FIXTURE ONLY: serve ndif 0.1.2 on a machine without a GPU (the loopback NDIF of the live suite).

Copied by `tests/ndif_loopback/serve.py` into the *server's* environment (never the client's, never a
real deployment) and active only in processes started with `NNSIGHT_CODI_NDIF_CPU_PATCHES=1`. ndif 0.1.2
is written for NVIDIA nodes; these patches, applied right after the named modules are imported, let its
model actors load and run a model on the CPU. A real NDIF host needs none of them.

1. `torch.cuda`: memory and device calls (synchronize, empty_cache, set_device, memory fractions and
   statistics, device properties) become no-ops or zeros; `torch.cuda.is_available()` stays False, so
   everything that asks still runs on the CPU.
2. ndif's `verify_device_placement` (weights on the assigned GPUs) is a no-op.
3. `HuggingFaceModel.from_model_key` loads on `device="cpu"`: ndif 0.1.2 passes `device=<gpu>` for one
   GPU, and `device_map="balanced"` + `max_memory` for several; both are dropped.
4. nnsight 0.8.1's `Remotable.describe_checkpoint` / `max_tp_size` take no `trust_remote_code=`
   keyword, which ndif 0.1.2's evaluator passes: the keyword is dropped.
5. A local model directory is its own canonical id (nnsight asks the Hub for a repo id's canonical
   spelling; a loopback server has no network).
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

FAKE_GPU_BYTES = 64 * 2**30  # what the fake GPU "has": matches the `cuda_memory_bytes` Ray resource


def _patch_torch(torch: ModuleType) -> None:
    cuda = torch.cuda
    for name in ("synchronize", "empty_cache", "set_device", "set_per_process_memory_fraction",
                 "reset_peak_memory_stats", "reset_max_memory_allocated", "ipc_collect"):
        setattr(cuda, name, lambda *a, **k: None)
    for name in ("memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved"):
        setattr(cuda, name, lambda *a, **k: 0)
    cuda.get_device_properties = lambda *a, **k: SimpleNamespace(
        total_memory=FAKE_GPU_BYTES, name="cpu (loopback test fixture)", major=0, minor=0)
    cuda.mem_get_info = lambda *a, **k: (FAKE_GPU_BYTES, FAKE_GPU_BYTES)


def _patch_ndif_util(util: ModuleType) -> None:
    setattr(util, "verify_device_placement", lambda *a, **k: None)


class _LocalDirIds(dict):
    """nnsight's repo-id cache, answering an existing local directory with itself."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and os.path.isdir(key))

    def __getitem__(self, key: Any) -> Any:
        if not super().__contains__(key) and isinstance(key, str) and os.path.isdir(key):
            return key
        return super().__getitem__(key)


def _patch_nnsight_huggingface(hf: ModuleType) -> None:
    setattr(hf, "_ID_CACHE", _LocalDirIds(getattr(hf, "_ID_CACHE")))
    model_cls = hf.HuggingFaceModel
    original = model_cls.from_model_key.__func__

    def from_model_key(cls: type, model_key: str, **kwargs: Any) -> Any:
        if "device" in kwargs or "device_map" in kwargs:  # the actor's GPU placement: CPU instead
            kwargs.pop("device_map", None)
            kwargs.pop("max_memory", None)
            kwargs["device"] = "cpu"
        return original(cls, model_key, **kwargs)

    model_cls.from_model_key = classmethod(from_model_key)


def _patch_nnsight_remotable(remotable: ModuleType) -> None:
    cls = remotable.Remotable
    for name in ("describe_checkpoint", "max_tp_size"):
        original = getattr(cls, name).__func__

        def without_keyword(klass: type, *args: Any, _original: Callable = original, **kwargs: Any) -> Any:
            kwargs.pop("trust_remote_code", None)
            return _original(klass, *args, **kwargs)

        setattr(cls, name, classmethod(without_keyword))


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "torch": _patch_torch,
    "ndif.services.ray.deployments.modeling.util": _patch_ndif_util,
    "nnsight.modeling.huggingface": _patch_nnsight_huggingface,
    "nnsight.modeling.mixins.remotable": _patch_nnsight_remotable,
}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a patch right after its module has executed (before anyone imports names from it)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        patch = PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader: Any = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            patch(module)

        loader.exec_module = exec_module
        return spec


if os.environ.get("NNSIGHT_CODI_NDIF_CPU_PATCHES") == "1":
    sys.meta_path.insert(0, _AfterImport())
