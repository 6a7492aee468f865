"""Moved: model assembly lives in `nnsight_codi.loading`, device/dtype helpers in `models.devices`, model
sources (shipped tiny dirs, hub ids, one-line source errors) in `models.sources`. Old paths warn until 0.2.
"""

from .._moved import moved

_LOADING = "nnsight_codi.loading"
_DEVICES = "nnsight_codi.models.devices"
_SOURCES = "nnsight_codi.models.sources"

__getattr__ = moved(__name__, {
    "load_model": _LOADING, "load_converted": _LOADING, "load_plain_lm": _LOADING, "check_lora_mode": _LOADING,
    "check_numerics": _LOADING, "NUMERICS": _LOADING,
    "resolve_device": _DEVICES, "resolve_dtype": _DEVICES, "DTYPES": _DEVICES, "DEVICE_HELP": _DEVICES,
    "TINY_MODEL_DIR": _SOURCES, "TINY_INSTRUCT_DIR": _SOURCES, "HUB_ID": _SOURCES, "ModelSourceError": _SOURCES,
    "one_line": _SOURCES, "looks_like_path": _SOURCES, "check_model_source": _SOURCES, "with_hub_errors": _SOURCES,
})
