"""Known CODI checkpoints: hub id → base model, tokenizer, special-token layout, prompt format.

Extend it with `register_checkpoint(CheckpointEntry(...))`.

Example:
    >>> lookup("zen-E/CODI-gpt2").base
    'openai-community/gpt2'
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CheckpointEntry:
    """How to load one published CODI checkpoint (codi.md §2).

    Attributes:
        repo_id: hub id of the checkpoint (a plain `state_dict` of the whole CODI module).
        base: hub id of the base model whose config and tokenizer the checkpoint was trained on.
        family: "gpt2" or "llama" (decides the LoRA target modules).
        filenames: files to try, in order.
        num_latents: K used by the released evaluation scripts.
        lora_alpha: LoRA alpha (scaling = alpha / r; r is read from the tensors).
        remove_eos: the reference's flag (False: prompt ends `eos, bot`).
        prompt_suffix: appended to every question.
        added_tokens: strings added to the tokenizer for bot/eot (answer-only variant) or empty.
        revision: pinned hub revision, if known.
    """

    repo_id: str
    base: str
    family: str
    filenames: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    num_latents: int = 6
    lora_alpha: float = 32.0
    remove_eos: bool = True
    prompt_suffix: str = ""
    added_tokens: tuple[str, ...] = ()
    revision: str | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


_REGISTRY: dict[str, CheckpointEntry] = {}


def register_checkpoint(entry: CheckpointEntry) -> None:
    """Add or replace a registry entry (keyed by `repo_id`, case-insensitive)."""
    _REGISTRY[entry.repo_id.lower()] = entry


def lookup(repo_id: str) -> CheckpointEntry | None:
    """The registry entry of a hub id (case-insensitive), or None if unknown."""
    return _REGISTRY.get(str(repo_id).lower())


def known_checkpoints() -> list[CheckpointEntry]:
    """Every checkpoint in the registry."""
    return list(_REGISTRY.values())


register_checkpoint(CheckpointEntry(
    repo_id="zen-E/CODI-gpt2", base="openai-community/gpt2", family="gpt2",
    notes="Reference CODI-GPT-2 (GSM8k-Aug); third-party reproduction 43.2% on GSM8K test.",
))
register_checkpoint(CheckpointEntry(
    repo_id="zen-E/CODI-llama3.2-1b-Instruct", base="meta-llama/Llama-3.2-1B-Instruct", family="llama",
    notes="Reference CODI-Llama-3.2-1B; use the Instruct tokenizer (eos <|eot_id|>); reproduction 55.4%.",
))
register_checkpoint(CheckpointEntry(
    repo_id="bcywinski/codi_llama1b-answer_only", base="meta-llama/Llama-3.2-1B-Instruct", family="llama",
    remove_eos=False, prompt_suffix=" Output only the answer and nothing else.",
    added_tokens=("<|bocot|>", "<|eocot|>"),
    notes="Answer-only variant (Cywinski et al.): bot/eot are added tokens <|bocot|>/<|eocot|>.",
))
register_checkpoint(CheckpointEntry(
    repo_id="internlm/SIM_COT-GPT2-Coconut", base="openai-community/gpt2", family="gpt2", filenames=("checkpoint_28",),
    num_latents=6, extra={"latent_family": "coconut"},
    notes="SIM-CoT's Coconut-loop GPT-2 (a Coconut wrapper state dict + step decoder; 0-byte config.json, no "
          "tokenizer): run as plain Coconut (its step decoder is SIM-CoT's lens).",
))
