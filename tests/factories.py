"""Tiny models built inside the tests: a word-level tokenizer, random GPT-2 / Llama CODI models,
and reference-layout CODI checkpoints (the `codi.base_model.model.…` + LoRA + `prj.*` key layout)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from nnsight_codi.models.codi_config import CodiConfig
from nnsight_codi.models.converted import save_converted
from nnsight_codi.models.projection import build_projection

WORDS = ["<eos>", "<unk>", "the", "answer", "is", ":", "tom", "has", "pens", ".", "he", "gets", "more",
         "how", "many", "?", "loses", "<<", ">>", "=", "+", "-", "*", "/"]
NUMBERS = [str(i) for i in range(40)]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: ids 0..63 (24 words + numbers 0..39); eos=0."""
    vocab = {w: i for i, w in enumerate(WORDS + NUMBERS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")


BASE_VOCAB = len(WORDS) + len(NUMBERS)  # V; pad=V, bot=V+1, eot=V+2 as in the reference


def codi_config(num_latents: int = 3, family: str = "gpt2", **overrides) -> CodiConfig:
    fields = dict(pad_id=BASE_VOCAB, bot_id=BASE_VOCAB + 1, eot_id=BASE_VOCAB + 2, num_latents=num_latents,
                  eos_id=0, family=family)
    fields.update(overrides)
    return CodiConfig(**fields)


def tiny_lm(family: str = "gpt2", seed: int = 0, layers: int = 2, dim: int = 32):
    torch.manual_seed(seed)
    vocab = BASE_VOCAB + 3
    if family == "gpt2":
        cfg = GPT2Config(n_layer=layers, n_embd=dim, n_head=4, vocab_size=vocab, n_positions=128,
                         bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        lm = GPT2LMHeadModel(cfg)
    elif family == "llama":
        cfg = LlamaConfig(num_hidden_layers=layers, hidden_size=dim, intermediate_size=2 * dim,
                          num_attention_heads=4, num_key_value_heads=2, vocab_size=vocab,
                          max_position_embeddings=128, bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
        lm = LlamaForCausalLM(cfg)
    else:
        raise ValueError(family)
    # Larger-than-default init so different inputs give clearly different greedy tokens.
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return lm.eval()


def make_converted(directory: Path, family: str = "gpt2", num_latents: int = 3, seed: int = 0, **overrides) -> Path:
    lm = tiny_lm(family, seed)
    torch.manual_seed(seed + 1)
    prj = build_projection(lm.config.hidden_size, 48)
    return save_converted(directory, lm, word_tokenizer(), prj, codi_config(num_latents, family, **overrides))


# -- reference-layout CODI checkpoints -------------------------------------------------------

PREFIX = "codi.base_model.model."
TARGETS = {"gpt2": ("c_attn", "c_proj", "c_fc"),
           "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")}


def make_base_dir(directory: Path, family: str = "gpt2") -> Path:
    """A 'base model' directory: config (vocab V) + tokenizer, as `--base` expects."""
    lm = tiny_lm(family)
    config = lm.config.__class__(**{**lm.config.to_dict(), "vocab_size": BASE_VOCAB})
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    word_tokenizer().save_pretrained(directory)
    return directory


def reference_state_dict(lm, prj, family: str, rank: int, lora_std: float = 0.2,
                         base_dtype: torch.dtype | None = None) -> tuple[dict, dict]:
    """`lm` + `prj` as the reference CODI state dict: every key under `codi.base_model.model.`,
    the LoRA target modules split into `base_layer` plus random non-zero `lora_A/B.default`
    (std `lora_std`), `prj.*`. Returns `(state, {module name: (A, B)})`."""
    state: dict[str, torch.Tensor] = {}
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    modules = dict(lm.named_modules())
    for key, value in lm.state_dict().items():
        value = value.clone() if base_dtype is None else value.to(base_dtype)
        module_name, _, leaf = key.rpartition(".")
        if module_name.rsplit(".", 1)[-1] in TARGETS[family]:
            state[f"{PREFIX}{module_name}.base_layer.{leaf}"] = value
            if leaf == "weight":
                module = modules[module_name]
                fan_in, fan_out = ((value.shape[0], value.shape[1]) if type(module).__name__ == "Conv1D"
                                   else (value.shape[1], value.shape[0]))
                a = torch.randn(rank, fan_in) * lora_std
                b = torch.randn(fan_out, rank) * lora_std
                state[f"{PREFIX}{module_name}.lora_A.default.weight"] = a
                state[f"{PREFIX}{module_name}.lora_B.default.weight"] = b
                lora[module_name] = (a, b)
        else:
            state[PREFIX + key] = value
    for key, value in prj.state_dict().items():
        state["prj." + key] = value.clone()
    return state, lora


def make_reference_checkpoint(directory: Path, family: str = "gpt2", rank: int = 4, alpha: float = 32.0,
                              seed: int = 0, fmt: str = "bin") -> dict:
    """Write a reference-layout CODI checkpoint (random weights, non-zero LoRA) and return its parts.

    Returns a dict with `path` (the checkpoint file), `base_dir`, `lm` (the unmerged base model, vocab V+3),
    `lora` ({module name: (A, B)}), `prj` (module) and `scale` — everything an independent
    implementation needs.
    """
    directory.mkdir(parents=True, exist_ok=True)
    base_dir = make_base_dir(directory / "base", family)
    lm = tiny_lm(family, seed)
    torch.manual_seed(seed + 7)
    prj = build_projection(lm.config.hidden_size, 40)
    state, lora = reference_state_dict(lm, prj, family, rank)
    if fmt == "bin":
        path = directory / "pytorch_model.bin"
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        path = directory / "model.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return {"path": path, "base_dir": base_dir, "lm": lm, "lora": lora, "prj": prj.eval(),
            "scale": alpha / rank, "state": state, "family": family}


class LatentInputs:
    """A step hook recording what each latent step 1..k is fed (the `input` site: the last position's input
    embedding), as `(name, step, Float[Tensor, "batch dim"])`."""

    def __init__(self, k: int, name: str = "input") -> None:
        self.k, self.name = k, name

    def sites(self, step):
        return ["input"] if 1 <= step <= self.k else []

    def visit(self, site, value, step, sink):
        sink.append((self.name, step, value[:, -1].detach().clone()))

