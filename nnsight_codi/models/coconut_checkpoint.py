"""Coconut checkpoints: facebookresearch/coconut's training output and the SIM-CoT Coconut release.

Both are one `torch.save` state dict of Coconut's wrapper module, with no HF directory around it:

- **Coconut's own layout** (`run.py` saves `checkpoint_<epoch>`): `base_causallm.*` (the causal LM,
  vocabulary = base tokenizer + `<|start-latent|>`, `<|end-latent|>`, `<|latent|>`) and
  `embedding.weight` (the same input embedding, registered twice by the wrapper);
- **SIM-CoT's Coconut release** (`internlm/SIM_COT-GPT2-Coconut`: `checkpoint_28`, a 0-byte
  `config.json`, no tokenizer): the same keys plus `expainable_llm.*`, the step decoder (a copy of the
  base LM without the three tokens), which the Coconut loop does not use; it is checked for shape and
  left out.

Every key is validated against the LM the base config builds (missing, unexpected, mis-shaped: one
line naming them); the tokenizer is the base's plus the three tokens, added in Coconut's order so
their ids are `V, V+1, V+2`; a 0-byte or `{}` `config.json` beside the file counts as absent.

Example:
    >>> find_coconut_checkpoint("/nonexistent") is None
    True
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .checkpoint import family_of, read_state_dict
from .codi_config import CodiConfig, CodiFormatError
from .family import COCONUT_TOKENS

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LM_PREFIX = "base_causallm."
EMBEDDING_KEY = "embedding.weight"
STEP_DECODER_PREFIX = "expainable_llm."  # SIM-CoT's spelling
CHECKPOINT_NAME = re.compile(r"^checkpoint_(\d+)$")
DEFAULT_NUM_LATENTS = 6  # GSM8K: c_thought 2 x max_latent_stage 3


def _keys(file: Path) -> list[str] | None:
    """The keys of a torch-pickled state dict, or None when the file is not one (no error)."""
    try:
        state = torch.load(str(file), map_location="meta", weights_only=True, mmap=False)
    except Exception:  # anything unreadable is simply not a Coconut checkpoint here
        return None
    return list(state) if isinstance(state, dict) else None


def is_coconut_state(keys: list[str]) -> bool:
    """Whether state-dict keys are a Coconut wrapper's (`base_causallm.*`)."""
    return any(k.startswith(LM_PREFIX) for k in keys)


def find_coconut_checkpoint(path: str | Path) -> Path | None:
    """The Coconut checkpoint at `path`: a file with `base_causallm.*` keys, or the newest
    `checkpoint_<n>` (else `pytorch_model.bin`) in a directory; None if there is none.
    """
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix == ".safetensors" or path.name == "config.json":
            return None
        keys = _keys(path)
        return path if keys is not None and is_coconut_state(keys) else None
    if not path.is_dir():
        return None
    numbered = sorted((int(m.group(1)), p) for p in path.iterdir() if (m := CHECKPOINT_NAME.match(p.name)) and p.is_file())
    candidates = [p for _, p in reversed(numbered)] + [path / "pytorch_model.bin"]
    for file in candidates:
        if file.is_file():
            keys = _keys(file)
            if keys is not None and is_coconut_state(keys):
                return file
    return None


def sidecar_config(file: Path) -> dict | None:
    """The HF config beside a checkpoint file, or None when absent, 0 bytes or `{}` (SIM-CoT's release)."""
    path = file.parent / "config.json"
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        data = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as err:
        raise CodiFormatError(f"{path}: not valid JSON ({err.msg}); remove it or pass --base") from None
    return data if isinstance(data, dict) and data.get("model_type") else None


@dataclass
class CoconutParts:
    """A loaded Coconut checkpoint: the LM, its tokenizer (with the three tokens), and the loop config."""

    lm: Any
    tokenizer: Any
    config: CodiConfig
    step_decoder_keys: int


def coconut_tokenizer(base: str | Path, vocab: int, where: Any):
    """The base tokenizer + Coconut's three tokens (`V, V+1, V+2`), pad = eos; checked against `vocab` rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    have = [t for t in COCONUT_TOKENS if t in tokenizer.get_vocab()]
    if not have:
        size = len(tokenizer)
        if size + len(COCONUT_TOKENS) != vocab:
            raise CodiFormatError(f"{where}: the LM has {vocab} token rows, but the base tokenizer ({base}) has "
                                  f"{size} tokens + 3 latent tokens = {size + 3}: wrong --base?")
        for token in COCONUT_TOKENS:
            tokenizer.add_tokens(token)
    elif len(have) != len(COCONUT_TOKENS):
        raise CodiFormatError(f"{where}: the tokenizer has only {have} of Coconut's tokens {list(COCONUT_TOKENS)}")
    if len(tokenizer) != vocab:
        raise CodiFormatError(f"{where}: the tokenizer has {len(tokenizer)} tokens, the LM {vocab} rows")
    if tokenizer.eos_token_id is None:
        raise CodiFormatError(f"{where}: the base tokenizer has no eos token")
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _problems(state: dict[str, Tensor], lm: PreTrainedModel) -> list[str]:
    expected = {k: tuple(v.shape) for k, v in lm.state_dict().items()}
    given = {k[len(LM_PREFIX):]: tuple(v.shape) for k, v in state.items() if k.startswith(LM_PREFIX)}
    missing = sorted(LM_PREFIX + k for k in set(expected) - set(given))
    shapes = sorted(f"{LM_PREFIX}{k} (file {given[k]}, expected {expected[k]})"
                    for k in set(expected) & set(given) if expected[k] != given[k])
    unexpected = sorted(LM_PREFIX + k for k in set(given) - set(expected))
    other = sorted(k for k in state if not k.startswith((LM_PREFIX, STEP_DECODER_PREFIX)) and k != EMBEDDING_KEY)
    out = []
    for label, keys in (("missing keys", missing), ("mis-shaped keys", shapes), ("unexpected keys", unexpected + other)):
        if keys:
            out.append(f"{label}: {', '.join(keys[:6])}" + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else ""))
    return out


def load_coconut_parts(file: str | Path, base: str | Path | None, num_latents: int | None = None,
                       dtype: torch.dtype = torch.float32, source: str | None = None) -> CoconutParts:
    """Read and validate a Coconut checkpoint (either layout) into a HF LM + tokenizer + `CodiConfig`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    file = Path(file)
    state = read_state_dict(file)
    if not is_coconut_state(list(state)):
        raise CodiFormatError(f"{file}: no '{LM_PREFIX}*' keys — not a Coconut checkpoint")
    embed = state.get(EMBEDDING_KEY)
    if embed is None:
        raise CodiFormatError(f"{file}: missing key {EMBEDDING_KEY} (Coconut's wrapper saves its input embedding)")
    if embed.ndim != 2:
        raise CodiFormatError(f"{file}: {EMBEDDING_KEY} has shape {tuple(embed.shape)}, expected [vocab, dim]")
    vocab = int(embed.shape[0])
    sidecar = sidecar_config(file)
    if base is None and sidecar is None:
        raise CodiFormatError(f"{file}: a Coconut checkpoint carries no config or tokenizer: pass its base model "
                              "(--base: hub id or local HF directory, e.g. openai-community/gpt2)")
    if sidecar is not None and base is None:
        base_config = AutoConfig.for_model(sidecar["model_type"], **{k: v for k, v in sidecar.items() if k != "model_type"})
        tok_source: str | Path = file.parent
    else:
        base_config = AutoConfig.from_pretrained(str(base))
        tok_source = base  # type: ignore[assignment]
    if base_config.hidden_size != embed.shape[1]:
        raise CodiFormatError(f"{file}: embedding width {embed.shape[1]}, but the base config's hidden size is "
                              f"{base_config.hidden_size}: wrong --base?")
    tokenizer = coconut_tokenizer(tok_source, vocab, file)
    base_config.vocab_size = vocab
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(base_config)
    problems = _problems(state, skeleton)
    if problems:
        raise CodiFormatError(f"{file}: not the Coconut wrapper of {base_config.model_type} "
                              f"(vocab {vocab}): " + "; ".join(problems))
    inner = state[LM_PREFIX + _embed_key(skeleton)]
    if not torch.equal(inner, embed):
        raise CodiFormatError(f"{file}: {EMBEDDING_KEY} differs from the LM's own input embedding "
                              f"({LM_PREFIX}{_embed_key(skeleton)}); the wrapper registers one tensor twice")
    decoder = [k for k in state if k.startswith(STEP_DECODER_PREFIX)]
    _check_step_decoder(state, decoder, base_config.hidden_size, file)
    del skeleton
    lm = AutoModelForCausalLM.from_config(base_config, dtype=dtype)
    lm.load_state_dict({k[len(LM_PREFIX):]: v for k, v in state.items() if k.startswith(LM_PREFIX)}, strict=True)
    lm.eval()
    ids = tokenizer.convert_tokens_to_ids(list(COCONUT_TOKENS))
    config = CodiConfig(pad_id=int(tokenizer.eos_token_id), bot_id=int(ids[0]), eot_id=int(ids[1]),
                        latent_id=int(ids[2]), num_latents=DEFAULT_NUM_LATENTS if num_latents is None else int(num_latents),
                        remove_eos=True, use_prj=False, eos_id=int(tokenizer.eos_token_id),
                        family=family_of(base_config.model_type), latent_family="coconut",
                        source=source or str(file), base=None if base is None else str(base),
                        extra={"layout": "sim-cot" if decoder else "coconut", "step_decoder_keys": len(decoder),
                               "tied_head": bool(getattr(base_config, "tie_word_embeddings", False))})
    return CoconutParts(lm, tokenizer, config, len(decoder))


def _embed_key(lm: PreTrainedModel) -> str:
    module = lm.get_input_embeddings()
    name = next(n for n, m in lm.named_modules() if m is module)
    return f"{name}.weight"


def _check_step_decoder(state: dict[str, Tensor], keys: list[str], width: int, file: Path) -> None:
    """SIM-CoT's step decoder (`expainable_llm.*`): present as a whole LM of the same width, or absent."""
    if not keys:
        return
    bad = [k for k in keys if state[k].ndim == 2 and width not in state[k].shape]
    if bad:
        raise CodiFormatError(f"{file}: step decoder tensors not of width {width}: {', '.join(sorted(bad)[:4])}")
