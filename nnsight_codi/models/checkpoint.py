"""Reference CODI checkpoints → merged HF causal LM + projection + `CodiConfig`.

A reference checkpoint is a plain `state_dict` of the whole CODI module (codi.md §2):
`codi.base_model.model.<HF key>` for the base weights, peft LoRA tensors
(`<module>.base_layer.*`, `<module>.lora_A.default.weight` `[r, in]`,
`<module>.lora_B.default.weight` `[out, r]`) on the target modules, and `prj.{1,3,ln}.*`.
LoRA is merged as `W + scale · B @ A` (transposed for GPT-2's Conv1D, stored `[in, out]`),
`scale = alpha / r`. Every tensor is validated: missing, unexpected or mis-shaped keys raise a
`CodiFormatError` that lists them (never a silent `strict=False`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from .codi_config import CodiConfig, CodiFormatError
from .projection import projection_from_state_dict
from .registry import CheckpointEntry

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PREFIX = "codi.base_model.model."
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}
FAMILIES = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama"}
CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin")


def family_of(model_type: str) -> str:
    """The CODI architecture family of an HF `model_type`; raise CodiFormatError if unsupported."""
    if model_type not in FAMILIES:
        raise CodiFormatError(
            f"unsupported architecture {model_type!r} for CODI checkpoints; supported: {sorted(FAMILIES)}"
        )
    return FAMILIES[model_type]


def _keys_of(file: Path) -> list[str]:
    if file.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            return list(handle.keys())
    return list(read_state_dict(file).keys())


def find_checkpoint_file(path: str | Path) -> Path | None:
    """The reference checkpoint file at `path` (a file, or a directory holding one), else None."""
    path = Path(path)
    candidates = [path] if path.is_file() else [path / name for name in CHECKPOINT_FILES]
    for file in candidates:
        if file.is_file() and file.suffix in (".safetensors", ".bin", ".pt", ".pth"):
            try:
                keys = _keys_of(file)
            except CodiFormatError:
                if path.is_file():
                    raise
                continue
            if any(k.startswith("codi.") or k.startswith("prj.") for k in keys):
                return file
            if path.is_file():
                raise CodiFormatError(f"{file}: no 'codi.*' or 'prj.*' keys — not a CODI checkpoint")
    return None


def read_state_dict(file: str | Path) -> dict[str, Tensor]:
    """Read a `.safetensors` or torch-pickled state dict (weights only), with clear errors."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file} not found")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(str(file), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # corrupt or truncated files raise many different types
        raise CodiFormatError(f"{file}: cannot read checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CodiFormatError(f"{file}: not a state dict of tensors")
    return state


@dataclass
class MergeReport:
    """What the merge consumed: LoRA rank, number of merged modules, ignored tied keys."""

    lora_rank: int | None
    merged_modules: int
    tied_keys_ignored: list[str]


def merge_reference_state_dict(state: dict[str, Tensor], lm: PreTrainedModel, family: str,
                               lora_alpha: float = 32.0, dtype: torch.dtype | None = None) -> tuple[dict[str, Tensor], dict[str, Tensor], MergeReport]:
    """Split and merge a reference state dict against the architecture `lm` (may be on meta).

    LoRA is merged in float64 and cast to `dtype` (default: the checkpoint's dtype).
    Returns `(lm_state, prj_state, report)`; raises `CodiFormatError` listing every missing,
    unexpected or mis-shaped key.
    """
    targets = LORA_TARGETS[family]
    prj_state = {k[len("prj."):]: v for k, v in state.items() if k.startswith("prj.")}
    remaining = {k: v for k, v in state.items() if not k.startswith("prj.")}
    expected = lm.state_dict(keep_vars=True)
    modules = dict(lm.named_modules())
    tied = _tied_keys(lm)

    lm_state: dict[str, Tensor] = {}
    missing: list[str] = []
    mismatched: list[str] = []
    ranks: set[int] = set()
    merged = 0
    for key, param in expected.items():
        module_name, _, leaf = key.rpartition(".")
        is_target = module_name.rsplit(".", 1)[-1] in targets and leaf in ("weight", "bias")
        if key in tied:
            remaining.pop(PREFIX + key, None)
            continue
        if is_target:
            base_key = f"{PREFIX}{module_name}.base_layer.{leaf}"
            if base_key not in remaining:
                missing.append(base_key)
                continue
            value = remaining.pop(base_key)
            if leaf == "weight":
                a_key = f"{PREFIX}{module_name}.lora_A.default.weight"
                b_key = f"{PREFIX}{module_name}.lora_B.default.weight"
                if a_key not in remaining or b_key not in remaining:
                    missing += [k for k in (a_key, b_key) if k not in remaining]
                    continue
                lora_a, lora_b = remaining.pop(a_key).double(), remaining.pop(b_key).double()
                if lora_a.shape[0] != lora_b.shape[1]:
                    mismatched.append(f"{a_key} {tuple(lora_a.shape)} vs {b_key} {tuple(lora_b.shape)}")
                    continue
                ranks.add(int(lora_a.shape[0]))
                delta = (lora_b @ lora_a) * (lora_alpha / lora_a.shape[0])  # [out, in]
                if _is_conv1d(modules.get(module_name)):
                    delta = delta.T  # GPT-2 Conv1D stores [in, out]
                if tuple(delta.shape) != tuple(value.shape):
                    mismatched.append(f"{a_key}/{b_key}: LoRA delta {tuple(delta.shape)} vs base {tuple(value.shape)}")
                    continue
                value = (value.double() + delta).to(dtype or value.dtype)
                merged += 1
        else:
            full_key = PREFIX + key
            if full_key not in remaining:
                missing.append(full_key)
                continue
            value = remaining.pop(full_key)
        if tuple(value.shape) != tuple(param.shape):
            mismatched.append(f"{PREFIX}{key}: checkpoint {tuple(value.shape)}, expected {tuple(param.shape)}")
            continue
        lm_state[key] = value
    unexpected = sorted(remaining)
    if missing or unexpected or mismatched:
        raise CodiFormatError(_problem_report(missing, unexpected, mismatched))
    if not prj_state:
        raise CodiFormatError("checkpoint has no 'prj.*' keys: the latent projection is missing")
    return lm_state, prj_state, MergeReport(min(ranks) if ranks else None, merged, sorted(tied))


def _problem_report(missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    lines = ["CODI checkpoint does not match the architecture:"]
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = items[:20]
            lines.append(f"  {title} ({len(items)}): " + ", ".join(shown) + (" …" if len(items) > 20 else ""))
    return "\n".join(lines)


def _is_conv1d(module: nn.Module | None) -> bool:
    return module is not None and type(module).__name__ == "Conv1D"


def _tied_keys(lm: PreTrainedModel) -> set[str]:
    """Output-embedding keys tied to the input embedding (the reference ties them; their values are ignored)."""
    out, inp = lm.get_output_embeddings(), lm.get_input_embeddings()
    if out is None or out.weight is not inp.weight:
        return set()
    return {f"{name}.weight" for name, module in lm.named_modules() if module is out}


def base_ties_embeddings(config: Any) -> bool:
    """Whether a base model's config ties its output head to its input embedding (HF default: True)."""
    value = getattr(config, "tie_word_embeddings", None)
    if value is None and hasattr(config, "get_text_config"):
        value = getattr(config.get_text_config(), "tie_word_embeddings", None)
    return True if value is None else bool(value)


def check_head(lm: PreTrainedModel, tied: bool, where: Any) -> None:
    """The loaded LM's output head is tied exactly when `tied` says so (`CodiFormatError` otherwise)."""
    out, inp = lm.get_output_embeddings(), lm.get_input_embeddings()
    if out is None:
        return
    out_w, inp_w = cast(Tensor, out.weight), cast(Tensor, inp.weight)  # nn.Module types .weight Tensor | Module
    is_tied = out_w is inp_w or out_w.data_ptr() == inp_w.data_ptr()
    if is_tied != tied:
        raise CodiFormatError(f"{where}: the output head is {'tied' if is_tied else 'untied'} but the model "
                              f"records it {'tied' if tied else 'untied'} (tie_word_embeddings)")


def convert_reference_checkpoint(file: str | Path, base: str | Path | None, entry: CheckpointEntry | None = None,
                                 lora_alpha: float | None = None, num_latents: int | None = None,
                                 dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, Any, nn.Module, CodiConfig]:
    """Load a reference checkpoint into `(merged HF LM, tokenizer, prj, CodiConfig)` on CPU."""
    if base is None:
        raise CodiFormatError(
            f"{file}: converting a CODI checkpoint needs its base model (--base: hub id or local HF directory "
            "with config and tokenizer); the registry supplies it for known checkpoints"
        )
    return convert_reference_state(read_state_dict(file), file, base, entry, lora_alpha, num_latents, dtype)


def convert_reference_state(state: dict[str, Tensor], file: str | Path, base: str | Path, entry: CheckpointEntry | None = None,
                            lora_alpha: float | None = None, num_latents: int | None = None,
                            dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, Any, nn.Module, CodiConfig]:
    """`convert_reference_checkpoint` on a state dict already read (`file` names it in errors and provenance)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    base_config = AutoConfig.from_pretrained(str(base))
    family = family_of(base_config.model_type)
    vocab = int(base_config.vocab_size)
    tokenizer = AutoTokenizer.from_pretrained(str(base), padding_side="left")
    embed_key = next((k for k in state if k.endswith("wte.weight") or k.endswith("embed_tokens.weight")), None)
    if embed_key is None:
        raise CodiFormatError(f"{file}: no input embedding (…wte.weight / …embed_tokens.weight) in the checkpoint")
    ckpt_vocab = int(state[embed_key].shape[0])
    if ckpt_vocab != vocab + 3:
        raise CodiFormatError(
            f"{file}: embedding has {ckpt_vocab} rows; a CODI checkpoint on base {base} (vocab {vocab}) has {vocab + 3}"
        )
    # Tie the output head only where the base ties it (the reference's `tie_weights()` does nothing
    # otherwise): an untied checkpoint keeps its own `lm_head.weight` [V+3, d], validated like every key.
    tied = base_ties_embeddings(base_config)
    config = AutoConfig.from_pretrained(str(base), vocab_size=vocab + 3, tie_word_embeddings=tied)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    alpha = lora_alpha if lora_alpha is not None else (entry.lora_alpha if entry else 32.0)
    lm_state, prj_state, report = merge_reference_state_dict(state, skeleton, family, alpha, dtype)
    del skeleton
    lm = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = lm.load_state_dict(lm_state, strict=False)
    missing = [k for k in missing if k not in report.tied_keys_ignored]
    if missing or unexpected:
        raise CodiFormatError(_problem_report(missing, list(unexpected), []))
    if tied:
        lm.tie_weights()
    check_head(lm, tied, file)
    prj = projection_from_state_dict(prj_state)

    codi_config = reference_codi_config(tokenizer, vocab, family, file, base, entry, num_latents,
                                        {"lora_rank": report.lora_rank, "lora_alpha": alpha,
                                         "merged_modules": report.merged_modules, "tied_head": tied})
    return lm.eval(), tokenizer, prj, codi_config


def reference_codi_config(tokenizer, vocab: int, family: str, file: str | Path, base: str | Path,
                          entry: CheckpointEntry | None, num_latents: int | None, extra: dict) -> CodiConfig:
    """The reference token layout (pad/bot/eot = V, V+1, V+2) on `tokenizer` (edited in place) as a CodiConfig."""
    # Tokenizer layout as the reference: [PAD] = V when the tokenizer has no pad token.
    if tokenizer.pad_token_id is None:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    if entry is not None and entry.added_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(entry.added_tokens)})
    return CodiConfig(
        pad_id=vocab, bot_id=vocab + 1, eot_id=vocab + 2,
        num_latents=num_latents if num_latents is not None else (entry.num_latents if entry else 6),
        remove_eos=entry.remove_eos if entry else True,
        prompt_suffix=entry.prompt_suffix if entry else "",
        eos_id=tokenizer.eos_token_id, family=family,
        source=entry.repo_id if entry else str(file), revision=entry.revision if entry else None, base=str(base),
        extra=extra,
    )

