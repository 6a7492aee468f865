"""Moved: local / serialised / hosted (NDIF) execution lives in `nnsight_codi.tracing.remote`, and
`load_instruct_model` in `nnsight_codi.loading`. Old paths warn until 0.2.
"""

from .._moved import moved

_REMOTE = "nnsight_codi.tracing.remote"

__getattr__ = moved(__name__, {
    "NdifError": _REMOTE, "REMOTE_HINT": _REMOTE, "is_ndif": _REMOTE, "check_remote": _REMOTE,
    "register_package": _REMOTE, "remote_kwargs": _REMOTE, "ndif_errors": _REMOTE, "ndif_error": _REMOTE,
    "load_instruct_model": "nnsight_codi.loading",
})
