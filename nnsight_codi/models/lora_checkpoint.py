"""A reference CODI checkpoint split for `lora_mode="interventions"`: base weights + LoRA/adapter tensors.

`split_reference_state_dict` splits a reference state dict against the base LM (vocab V) into the
base's own state (embedding/head rows < V, every target module's `base_layer`), the LoRA pairs
`(A [r, in], B [out, r])` in forward order, the three added tokens' rows (V, V+1, V+2) and the
projection, validating every key. `base_checks` picks a few base tensors whose checksums
(`BaseCheck`) let `tracing.lora.verify_base` refuse a (hosted) base with other weights.
Running it as interventions is `nnsight_codi.tracing.lora_interventions`; assembling the model `nnsight_codi.loading`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

from .architecture import FINAL_NORM_PATHS, first_attribute
from .checkpoint import LORA_TARGETS, PREFIX, _problem_report, _tied_keys
from .codi_config import CodiFormatError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LORA_KEY = re.compile(r"^" + re.escape(PREFIX) + r"(.+)\.lora_([AB])\.default\.weight$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
CHECK_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


class BaseMismatchError(CodiFormatError):
    """The (hosted) base model is not the one the CODI checkpoint was trained on."""


def checksum(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """`Float64[Tensor, "3"]`: sum, |sum| and a position-weighted sum of `tensor` cast to `dtype`."""
    flat = tensor.detach().to(dtype).to(torch.float64).flatten()
    weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64) % 97 + 1
    return torch.stack([flat.sum(), flat.abs().sum(), (flat * weights).sum()])


@dataclass
class BaseCheck:
    """One base tensor's expected checksums: `path` (parameter path in the base LM), shape, checkpoint dtype.

    `expected[dtype]` is the checksum of the checkpoint tensor rounded through `dtype` (the remote
    model's) and back to the checkpoint dtype, so an fp32 hosted base matches a bf16 checkpoint of it.
    """

    path: str
    shape: tuple[int, ...]
    ckpt_dtype: torch.dtype
    expected: dict[torch.dtype, Tensor]

    @classmethod
    def of(cls, path: str, tensor: Tensor) -> BaseCheck:
        expected = {d: checksum(tensor.to(d), tensor.dtype) for d in CHECK_DTYPES}
        return cls(path, tuple(tensor.shape), tensor.dtype, expected)


@dataclass
class SplitCheckpoint:
    """A reference state dict split into the base LM's state (vocab V) and the adapter's parts."""

    base_state: dict[str, Tensor]
    lora: dict[str, tuple[Tensor, Tensor]]
    rows: Tensor
    head_rows: Tensor | None
    prj_state: dict[str, Tensor]
    embed_path: str
    head_path: str
    rank: int | None


def split_reference_state_dict(state: dict[str, Tensor], skeleton: PreTrainedModel, family: str) -> SplitCheckpoint:
    """Split `state` against the base LM `skeleton` (vocab V, may be on meta); validate every key.

    Raises `CodiFormatError` listing the LoRA target modules the base lacks, or every missing,
    unexpected or mis-shaped key.
    """
    modules = dict(skeleton.named_modules())
    embed_module, head_module = skeleton.get_input_embeddings(), skeleton.get_output_embeddings()
    embed_path = next(n for n, m in modules.items() if m is embed_module)
    head_path = next(n for n, m in modules.items() if m is head_module)
    vocab = int(cast(Tensor, embed_module.weight).shape[0])
    targets = LORA_TARGETS[family]

    lora_names = {m.group(1) for m in map(LORA_KEY.match, state) if m}
    lacking = sorted(n for n in lora_names if n not in modules)
    if lacking:
        raise CodiFormatError(
            f"the base model lacks {len(lacking)} LoRA target module(s) of the checkpoint: " + ", ".join(lacking[:20])
            + (" …" if len(lacking) > 20 else ""))

    remaining = {k: v for k, v in state.items() if not k.startswith("prj.")}
    prj_state = {k[len("prj."):]: v for k, v in state.items() if k.startswith("prj.")}
    tied = _tied_keys(skeleton)
    base_state: dict[str, Tensor] = {}
    missing, mismatched = [], []
    rows = head_rows = None
    for key, param in skeleton.state_dict(keep_vars=True).items():
        module_name, _, leaf = key.rpartition(".")
        if key in tied:
            remaining.pop(PREFIX + key, None)
            continue
        is_target = module_name in lora_names or (module_name.rsplit(".", 1)[-1] in targets
                                                 and PREFIX + f"{module_name}.base_layer.{leaf}" in remaining)
        ckpt_key = f"{PREFIX}{module_name}.base_layer.{leaf}" if is_target else PREFIX + key
        if ckpt_key not in remaining:
            missing.append(ckpt_key)
            continue
        value = remaining.pop(ckpt_key)
        if module_name in (embed_path, head_path) and leaf == "weight" and value.shape[0] == vocab + 3:
            extra, value = value[vocab:], value[:vocab]
            if module_name == embed_path:
                rows = extra
            else:
                head_rows = extra
        if tuple(value.shape) != tuple(param.shape):
            mismatched.append(f"{ckpt_key}: checkpoint {tuple(value.shape)}, base {tuple(param.shape)}")
            continue
        base_state[key] = value
    lora: dict[str, tuple[Tensor, Tensor]] = OrderedDict()
    ranks = set()
    for name, module in modules.items():  # named_modules order == forward order for GPT-2 / Llama blocks
        if name not in lora_names:
            continue
        a_key, b_key = f"{PREFIX}{name}.lora_A.default.weight", f"{PREFIX}{name}.lora_B.default.weight"
        if a_key not in remaining or b_key not in remaining:
            missing += [k for k in (a_key, b_key) if k not in remaining]
            continue
        a, b = remaining.pop(a_key), remaining.pop(b_key)
        weight = cast(Tensor, module.weight)  # a Linear's or Conv1D's (nn.Module types it Tensor | Module)
        fan_in, fan_out = ((weight.shape[0], weight.shape[1]) if type(module).__name__ == "Conv1D"
                           else (weight.shape[1], weight.shape[0]))
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != fan_in or b.shape[0] != fan_out or a.shape[0] != b.shape[1]:
            mismatched.append(f"{a_key}/{b_key}: A {tuple(a.shape)}, B {tuple(b.shape)} for a module "
                              f"{fan_in} → {fan_out}")
            continue
        ranks.add(int(a.shape[0]))
        lora[name] = (a, b)
    if rows is None:
        missing.append(f"{PREFIX}{embed_path}.weight rows {vocab}..{vocab + 2} (pad, bot, eot)")
    unexpected = sorted(remaining)
    if missing or unexpected or mismatched:
        raise CodiFormatError(_problem_report(missing, unexpected, mismatched))
    if not prj_state:
        raise CodiFormatError("checkpoint has no 'prj.*' keys: the latent projection is missing")
    assert rows is not None  # a missing row block was reported above
    return SplitCheckpoint(base_state, lora, rows, head_rows, prj_state, embed_path, head_path,
                           min(ranks) if ranks else None)


def base_has_weights(base: str | Path) -> bool:
    """Whether `base` is a local directory holding model weights (else the checkpoint's own base weights are used)."""
    path = Path(str(base)).expanduser()
    return path.is_dir() and any((path / name).is_file() for name in WEIGHT_FILES)


def base_checks(split: SplitCheckpoint, skeleton: PreTrainedModel) -> list[BaseCheck]:
    """Checksums of the embedding (rows < V), an untied output head (rows < V), the first and last LoRA
    module's base weight and the final norm.
    """
    paths = [f"{split.embed_path}.weight"]
    if split.head_rows is not None and f"{split.head_path}.weight" in split.base_state:
        paths.append(f"{split.head_path}.weight")  # untied: the base's own head must be the checkpoint's
    names = list(split.lora)
    if names:
        paths += [f"{names[0]}.weight", f"{names[-1]}.weight"]
    modules = {id(m): n for n, m in skeleton.named_modules()}
    try:
        norm = modules.get(id(first_attribute(skeleton, FINAL_NORM_PATHS, "final norm")))
        if norm is not None and f"{norm}.weight" in split.base_state:
            paths.append(f"{norm}.weight")
    except ValueError:
        pass
    return [BaseCheck.of(p, split.base_state[p]) for p in dict.fromkeys(paths)]
