"""Moved: a reference checkpoint split into base weights + LoRA tensors and the base checksums live in
`nnsight_codi.models.lora_checkpoint`; the adapter and the LoRA-as-interventions model in
`nnsight_codi.tracing.lora`; loading in `nnsight_codi.loading`; request counting in
`nnsight_codi.tracing.remote`. Old paths warn until 0.2.
"""

from .._moved import moved

_CKPT = "nnsight_codi.models.lora_checkpoint"
_LORA = "nnsight_codi.tracing.lora"
_REMOTE = "nnsight_codi.tracing.remote"

__getattr__ = moved(__name__, {
    "LORA_KEY": _CKPT, "WEIGHT_FILES": _CKPT, "CHECK_DTYPES": _CKPT, "BaseMismatchError": _CKPT, "checksum": _CKPT,
    "BaseCheck": _CKPT, "SplitCheckpoint": _CKPT, "split_reference_state_dict": _CKPT, "base_has_weights": _CKPT,
    "base_checks": _CKPT,
    "envoy_at": _LORA, "LoraAdapter": _LORA, "read_base_checksums": _LORA, "verify_base": _LORA,
    "LoraCodiModel": _LORA,
    "by_value": _REMOTE, "PortableProjection": _REMOTE, "RequestLog": _REMOTE, "count_requests": _REMOTE,
    "LORA_MODES": "nnsight_codi.loading", "load_lora_interventions": "nnsight_codi.loading",
})
