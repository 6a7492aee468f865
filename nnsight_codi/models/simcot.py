"""SIM-CoT releases: the CODI-variant checkpoints and their step decoders.

SIM-CoT (InternLM/SIM-CoT) trains CODI (or Coconut) with an auxiliary **step decoder**: a copy of the
base LM that reads one latent vector and writes the text of one reasoning step. Inference is plain
CODI; the decoder is what turns latents into text. A CODI-variant release
(`internlm/SIM_COT-GPT2-CODI`, `internlm/SIM_COT-LLaMA3-CODI-{1B,3B,8B}`) is the state dict of the
whole training module:

- `codi.base_model.model.<HF key>` (+ peft LoRA tensors) and `prj.*`: the CODI model, exactly the
  reference CODI layout (`models.checkpoint`);
- `decoder.<HF key>`: the step decoder, a full causal LM of the *base* vocabulary (not resized);
- `pj_in.*` (a Linear from the CODI width to the decoder width) and `pj_out.{U,V}` (a low-rank map
  from the decoder's logits to the CODI vocabulary): only when a decoder of another size was used.

The files come as `model.safetensors` / `pytorch_model.bin`, or sharded (`model-0000i-of-0000n.safetensors`
or `pytorch_model-0000i-of-0000n.bin`, with or without their `*.index.json`), next to a 0-byte
`config.json` (ignored: the architecture is the base model's). Every key is validated; a missing
shard, an unknown key or a mis-shaped tensor is a one-line `CodiFormatError`.

Example:
    >>> sorted(SIMCOT_RELEASES)[:2]
    ['internlm/sim_cot-gpt2-codi', 'internlm/sim_cot-llama3-codi-1b']
    >>> SIMCOT_RELEASES["internlm/sim_cot-gpt2-codi"].base
    'openai-community/gpt2'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from huggingface_hub import snapshot_download
from safetensors import safe_open
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForCausalLM

from .checkpoint import _tied_keys, convert_reference_state, read_state_dict
from .codi_config import CodiFormatError
from .hub import ADVICE, _offline
from .kv_cache import cache_kwargs, output_cache
from .model_sources import ModelSourceError, one_line
from .registry import CheckpointEntry

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SHARD = re.compile(r"^(model|pytorch_model)-(\d+)-of-(\d+)\.(safetensors|bin)$")
PARTS = ("codi.", "prj.", "decoder.", "pj_in.", "pj_out.")


def _entry(repo: str, base: str, family: str, note: str) -> CheckpointEntry:
    return CheckpointEntry(repo_id=repo, base=base, family=family, num_latents=6, remove_eos=True,
                           filenames=SINGLE_FILES, notes=note, extra={"simcot": "codi"})


SIMCOT_RELEASES: dict[str, CheckpointEntry] = {e.repo_id.lower(): e for e in (
    _entry("internlm/SIM_COT-GPT2-CODI", "openai-community/gpt2", "gpt2",
           "SIM-CoT on CODI, GPT-2 (train script: prj 768, 6 latents, LoRA r128 a32, remove_eos)."),
    _entry("internlm/SIM_COT-LLaMA3-CODI-1B", "meta-llama/Llama-3.2-1B-Instruct", "llama",
           "SIM-CoT on CODI, Llama-3.2-1B-Instruct (prj 2048)."),
    _entry("internlm/SIM_COT-LLaMA3-CODI-3B", "meta-llama/Llama-3.2-3B-Instruct", "llama",
           "SIM-CoT on CODI, Llama-3.2-3B-Instruct (prj 3072; sharded)."),
    _entry("internlm/SIM_COT-LLaMA3-CODI-8B", "meta-llama/Llama-3.1-8B-Instruct", "llama",
           "SIM-CoT on CODI, Llama-3.1-8B-Instruct (prj 4096; sharded)."),
)}
"""The published SIM-CoT CODI-variant releases (hub id, lower case → how to load it)."""


def simcot_entry(spec: str) -> CheckpointEntry | None:
    """The release entry of a hub id (case-insensitive), or None."""
    return SIMCOT_RELEASES.get(str(spec).lower())


# -- the files of a release ------------------------------------------------------------------------------


def release_files(path: str | Path) -> list[Path]:
    """The weight files of a release at `path` (a file, or a directory holding one file or all shards).

    Raises `CodiFormatError` (one line) for a directory without weights, a shard the index names that
    is not there, or an incomplete set of `-0000i-of-0000n` shards.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    for name in SINGLE_FILES:
        if (path / name).is_file():
            return [path / name]
    for name in INDEX_FILES:
        index = path / name
        if index.is_file():
            shards = sorted(set(_weight_map(index).values()))
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise CodiFormatError(f"{index}: shard(s) missing: {', '.join(missing)}")
            return [path / s for s in shards]
    shards = sorted(p for p in path.iterdir() if SHARD.match(p.name))
    if not shards:
        raise CodiFormatError(f"{path}: no weights ({' / '.join(SINGLE_FILES)}, an index, or "
                              "model-0000i-of-0000n shards)")
    kinds = {(m.group(1), m.group(3), m.group(4)) for m in map(SHARD.match, (p.name for p in shards)) if m}
    if len(kinds) != 1:
        raise CodiFormatError(f"{path}: shards of several sets: {', '.join(p.name for p in shards)}")
    stem, total, ext = kinds.pop()
    have = {int(cast(re.Match, SHARD.match(p.name)).group(2)) for p in shards}
    missing = [f"{stem}-{i:0{len(total)}d}-of-{total}.{ext}" for i in range(1, int(total) + 1) if i not in have]
    if missing:
        raise CodiFormatError(f"{path}: shard(s) missing: {', '.join(missing)}")
    return shards


def _weight_map(index: Path) -> dict[str, str]:
    try:
        data = json.loads(index.read_text())
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CodiFormatError(f"{index}: not a weight index ({type(err).__name__}: {err})") from None
    return {str(k): str(v) for k, v in weight_map.items()}


def read_release(path: str | Path) -> dict[str, Tensor]:
    """Every tensor of the release at `path`, from one file or all its shards (checked against the index)."""
    files = release_files(path)
    state: dict[str, Tensor] = {}
    for file in files:
        part = read_state_dict(file)
        twice = sorted(set(part) & set(state))
        if twice:
            raise CodiFormatError(f"{file}: key(s) also in another shard: {', '.join(twice[:5])}")
        state.update(part)
    directory = Path(path) if Path(path).is_dir() else None
    if directory is not None and len(files) > 1:
        for name in INDEX_FILES:
            if (directory / name).is_file():
                expected = set(_weight_map(directory / name))
                lost = sorted(expected - set(state))
                if lost:
                    raise CodiFormatError(f"{directory / name}: key(s) named by the index are in no shard: "
                                          f"{', '.join(lost[:5])}")
    return state


def is_release_dir(path: str | Path) -> bool:
    """Whether `path` is a directory holding SIM-CoT-layout weights (`decoder.*` keys; any of the layouts)."""
    path = Path(path)
    if not path.is_dir():
        return False
    try:
        files = release_files(path)
    except (CodiFormatError, OSError):
        return any(SHARD.match(p.name) for p in path.iterdir()) or any((path / n).is_file() for n in INDEX_FILES)
    return any(k.startswith("decoder.") for k in _keys(files[0])) or len(files) > 1


def _keys(file: Path) -> list[str]:
    if file.suffix == ".safetensors":
        try:
            with safe_open(str(file), framework="pt") as handle:
                return list(handle.keys())
        except Exception:  # unreadable: read_release reports it properly
            return []
    try:
        return list(read_state_dict(file))
    except CodiFormatError:
        return []


def split_release(state: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """`state` by part: `codi` (the `codi.*` and `prj.*` keys, unchanged), `decoder`, `pj_in`, `pj_out`
    (prefix removed). Keys of no part are a `CodiFormatError` listing them.
    """
    parts: dict[str, dict[str, Tensor]] = {"codi": {}, "decoder": {}, "pj_in": {}, "pj_out": {}}
    unknown = []
    for key, value in state.items():
        if key.startswith(("codi.", "prj.")):
            parts["codi"][key] = value
        elif key.split(".", 1)[0] in ("decoder", "pj_in", "pj_out") and "." in key:
            head, rest = key.split(".", 1)
            parts[head][rest] = value
        else:
            unknown.append(key)
    if unknown:
        raise CodiFormatError(f"unexpected key(s) in a SIM-CoT release (expected {', '.join(p + '*' for p in PARTS)}): "
                              + ", ".join(sorted(unknown)[:10]))
    if not parts["codi"]:
        raise CodiFormatError("no 'codi.*' keys: not a SIM-CoT CODI release")
    return parts


# -- the step decoder -------------------------------------------------------------------------------------


class StepDecoder(nn.Module):
    """The SIM-CoT step decoder: latent vector(s) → the text of one reasoning step (greedy).

    The decoder LM reads `[prefix embeds] + [vectors] + [embeds of the tokens written so far]` as input
    embeddings (all through `pj_in` when the release has one) and writes tokens until `eos_id`. The token
    embeddings are the *CODI* model's (`embed`), as SIM-CoT trains it, not the decoder's own.

    Attributes:
        lm: the decoder causal LM.
        embed: `Float[Tensor, "vocab dim"]` the CODI model's token embeddings, for the written tokens (and a
            text prefix).
        pj_in: the width map into the decoder (None: identity).
        pj_out: `(U, V)` of the low-rank logits map (None: identity).
        eos_id: the token that ends a step.
        position_offset: first position id (0 for the CODI variant; 1 for the Coconut variant).
        variant: "codi" (one vector a step) or "coconut" (a group of `group` = c_thought vectors a step).
        prefix: the Coconut variant's optional "Step k of the solution" prompt before each group.
    """

    def __init__(self, lm: PreTrainedModel, embed: Tensor, eos_id: int, pj_in: nn.Module | None = None,
                 pj_out: tuple[Tensor, Tensor] | None = None, position_offset: int = 0,
                 variant: str = "codi", group: int = 1, prefix: bool = False) -> None:
        super().__init__()
        self.lm = lm.eval()
        self.register_buffer("embed", embed.detach().clone(), persistent=False)
        self.pj_in = pj_in
        if pj_out is not None:
            self.register_buffer("pj_out_u", pj_out[0].detach().clone(), persistent=False)
            self.register_buffer("pj_out_v", pj_out[1].detach().clone(), persistent=False)
        self.has_pj_out = pj_out is not None
        self.eos_id = int(eos_id)
        self.position_offset = int(position_offset)
        self.variant = variant
        self.group = int(group)
        self.prefix = bool(prefix)

    @staticmethod
    def prefix_text(index: int) -> str:
        """The Coconut variant's prompt before the vectors of group `index` (0-based), as SIM-CoT writes it:
        "Step {index+1} of the solution", and for the third group "Step 3 and all the remaining steps of the
        solution" (its training merges every step from the third on).

        >>> StepDecoder.prefix_text(0), StepDecoder.prefix_text(2)
        ('Step 1 of the solution', 'Step 3 and all the remaining steps of the solution')
        """
        if index == 2:
            return "Step 3 and all the remaining steps of the solution"
        return f"Step {index + 1} of the solution"

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.lm.parameters()).dtype

    def token_embeds(self, ids: Tensor) -> Tensor:
        """`Float[Tensor, "... dim"]`: the CODI embeddings of `ids`."""
        embed = cast(Tensor, self.embed)
        return embed[ids.to(embed.device)].to(self.dtype)

    def _logits(self, out_logits: Tensor) -> Tensor:
        if self.has_pj_out:
            return out_logits.float() @ cast(Tensor, self.pj_out_u).float() @ cast(Tensor, self.pj_out_v).float()
        return out_logits

    @torch.inference_mode()
    def decode(self, vectors: Tensor, max_new_tokens: int = 48, prefix_ids: list[int] | None = None
               ) -> list[list[int]]:
        """Greedy step texts (token ids, the final eos included when written) of `vectors`.

        Args:
            vectors: `Float[Tensor, "batch n dim"]`, the n latent vectors of one step per row (n = 1 for the
                CODI variant, c_thought for the Coconut variant).
            max_new_tokens: bound on the tokens of one step.
            prefix_ids: token ids put before the vectors (the Coconut variant's "Step k of the solution").

        Every row has the same input length, so a batch needs no padding: batched equals one at a time.
        """
        if vectors.dim() != 3:
            raise ValueError(f"vectors must be [batch, n, dim], got shape {tuple(vectors.shape)}")
        batch = vectors.shape[0]
        inputs = vectors.to(self.device, self.dtype)
        if prefix_ids:
            prefix = self.token_embeds(torch.tensor(prefix_ids, device=self.device))[None].expand(batch, -1, -1)
            inputs = torch.cat([prefix, inputs], dim=1)
        out_ids: list[list[int]] = [[] for _ in range(batch)]
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        cache = None
        position = self.position_offset
        step_in = inputs
        for _ in range(max_new_tokens):
            width = step_in.shape[1]
            positions = torch.arange(position, position + width, device=self.device)[None].expand(batch, -1)
            embeds = self.pj_in(step_in) if self.pj_in is not None else step_in
            out = self.lm(inputs_embeds=embeds, position_ids=positions, use_cache=True, **cache_kwargs(cache))
            cache = output_cache(out)
            position += width
            nxt = self._logits(out.logits[:, -1]).argmax(-1)
            for row, token in enumerate(nxt.tolist()):
                if not done[row]:
                    out_ids[row].append(int(token))
            done = done | (nxt == self.eos_id)
            if bool(done.all()):
                break
            step_in = self.token_embeds(nxt)[:, None]
        return out_ids


def coconut_step_decoder(file: str | Path, lm: PreTrainedModel, eos_id: int, dtype: torch.dtype = torch.float32,
                         c_thought: int = 2, prefix: bool = False) -> StepDecoder | None:
    """The step decoder of a SIM-CoT Coconut release (`expainable_llm.*` in `checkpoint_<n>`), or None if it has none.

    It is a copy of the base LM without Coconut's three tokens (the architecture of `lm`, vocabulary = its own
    embedding rows); it reads a group of `c_thought` fed-back vectors (SIM-CoT's GSM8K setting: 2), optionally
    after a "Step k of the solution" prompt, with positions from 1, and embeds the tokens it writes with the
    Coconut LM's input embedding, as SIM-CoT's own decoding does.
    """
    state = {k[len(COCONUT_DECODER_PREFIX):]: v for k, v in read_state_dict(file).items()
             if k.startswith(COCONUT_DECODER_PREFIX)}
    if not state:
        return None
    rows = next((v for k, v in state.items() if k.endswith(("wte.weight", "embed_tokens.weight"))), None)
    if rows is None:
        raise CodiFormatError(f"{file}: the step decoder ({COCONUT_DECODER_PREFIX}*) has no input embedding")
    config = lm.config.__class__(**{**lm.config.to_dict(), "vocab_size": int(rows.shape[0])})
    embed = cast(Tensor, lm.get_input_embeddings().weight).detach().float()
    decoder = build_step_decoder({"decoder": state, "pj_in": {}, "pj_out": {}}, config, embed, eos_id, dtype,
                                 where=file, prefix_name=COCONUT_DECODER_PREFIX)
    decoder.position_offset, decoder.variant, decoder.group, decoder.prefix = 1, "coconut", int(c_thought), prefix
    return decoder


COCONUT_DECODER_PREFIX = "expainable_llm."  # SIM-CoT's spelling


def build_step_decoder(parts: dict[str, dict[str, Tensor]], base_config: Any, embed: Tensor, eos_id: int,
                       dtype: torch.dtype = torch.float32, where: Any = "release",
                       prefix_name: str = "decoder.") -> StepDecoder:
    """The `StepDecoder` of a release's `decoder` / `pj_in` / `pj_out` parts on the base architecture
    (`base_config`, vocab V); every key validated (missing, unexpected, mis-shaped: `CodiFormatError`).
    """
    state = parts["decoder"]
    if not state:
        raise CodiFormatError(f"{where}: no 'decoder.*' keys: this checkpoint has no SIM-CoT step decoder")
    lm = AutoModelForCausalLM.from_config(base_config, dtype=dtype)
    expected = lm.state_dict()
    tied = _tied_keys(lm)
    missing = [f"{prefix_name}{k}" for k in expected if k not in state and k not in tied]
    unexpected = [f"{prefix_name}{k}" for k in state if k not in expected]
    mismatched = [f"{prefix_name}{k}: checkpoint {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
                  for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        problems = [f"{title} ({len(items)}): {', '.join(items[:5])}{' …' if len(items) > 5 else ''}"
                    for title, items in (("missing", missing), ("unexpected", unexpected),
                                         ("mis-shaped", mismatched)) if items]
        raise CodiFormatError(f"{where}: the step decoder does not match the {base_config.model_type} "
                              f"architecture: " + "; ".join(problems))
    lm.load_state_dict({k: v for k, v in state.items() if k not in tied}, strict=False)
    if tied:
        lm.tie_weights()
    codi_dim, dec_dim = int(embed.shape[1]), int(lm.config.hidden_size)
    pj_in = _pj_in(parts["pj_in"], codi_dim, dec_dim, where)
    pj_out = _pj_out(parts["pj_out"], int(lm.config.vocab_size), where)
    if pj_in is not None:
        pj_in = pj_in.to(dtype)
    return StepDecoder(lm, embed, eos_id, pj_in, pj_out)


def _pj_in(state: dict[str, Tensor], codi_dim: int, dec_dim: int, where: Any) -> nn.Module | None:
    if not state:
        if codi_dim != dec_dim:
            raise CodiFormatError(f"{where}: the decoder is {dec_dim} wide, the CODI model {codi_dim}, and "
                                  "there is no 'pj_in.*' to map between them")
        return None
    if set(state) != {"weight", "bias"} or tuple(state["weight"].shape) != (dec_dim, codi_dim) \
            or tuple(state["bias"].shape) != (dec_dim,):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        raise CodiFormatError(f"{where}: pj_in must be a Linear {codi_dim} -> {dec_dim} (weight, bias); got {shapes}")
    linear = nn.Linear(codi_dim, dec_dim)
    linear.load_state_dict({k: v.float() for k, v in state.items()})
    return linear.eval()


def _pj_out(state: dict[str, Tensor], dec_vocab: int, where: Any) -> tuple[Tensor, Tensor] | None:
    if not state:
        return None
    if set(state) != {"U", "V"} or state["U"].dim() != 2 or state["V"].dim() != 2 \
            or state["U"].shape[0] != dec_vocab or state["U"].shape[1] != state["V"].shape[0]:
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        raise CodiFormatError(f"{where}: pj_out must be U [{dec_vocab}, r], V [r, vocab]; got {shapes}")
    return state["U"], state["V"]


@dataclass
class SimcotRelease:
    """A loaded SIM-CoT CODI release: the CODI parts (for `CodiModel`) and the step decoder."""

    lm: Any
    tokenizer: Any
    prj: nn.Module
    config: Any
    decoder: StepDecoder


def convert_release(path: str | Path, base: str | Path | None, entry: CheckpointEntry | None = None,
                    num_latents: int | None = None, dtype: torch.dtype = torch.float32,
                    decoder_base: str | Path | None = None) -> SimcotRelease:
    """Load a SIM-CoT CODI release (any layout) into the merged CODI parts + its `StepDecoder`, on CPU.

    `decoder_base` is the architecture of a step decoder trained from another model (SIM-CoT's
    `decoder_path`, with `pj_in`); default: the decoder is a copy of `base`.
    """
    if base is None:
        raise CodiFormatError(f"{path}: a SIM-CoT release needs its base model (--base: hub id or local HF "
                              "directory with config and tokenizer); known releases name it")
    parts = split_release(read_release(path))
    lm, tokenizer, prj, config = convert_reference_state(parts["codi"], path, base, entry, num_latents=num_latents,
                                                         dtype=dtype)
    base_config = AutoConfig.from_pretrained(str(base))
    embed = cast(Tensor, lm.get_input_embeddings().weight).detach().float()  # V+3 rows: a pj_out vocabulary may reach them
    if decoder_base is not None:
        base_config = AutoConfig.from_pretrained(str(decoder_base))
    if config.eos_id is None:
        raise CodiFormatError(f"{base}: the tokenizer has no eos token; the step decoder stops on it")
    decoder = build_step_decoder(parts, base_config, embed, config.eos_id, dtype, where=path)
    config.extra["simcot"] = {"variant": "codi", "pj_in": decoder.pj_in is not None, "pj_out": decoder.has_pj_out,
                              "files": len(release_files(path))}
    return SimcotRelease(lm, tokenizer, prj, config, decoder)


def download_release(entry: CheckpointEntry) -> Path:
    """Fetch a release's weight files (single or sharded) from the hub (needs network); its local directory."""
    try:
        return Path(snapshot_download(entry.repo_id, revision=entry.revision,
                                      allow_patterns=["*.safetensors", "*.bin", "*.index.json"]))
    except Exception as err:  # offline, not found, auth, HTTP errors
        if _offline(err):
            raise ModelSourceError(f"cannot download {entry.repo_id}: no network and not in the local Hugging Face "
                                   f"cache; {ADVICE}") from None
        raise ModelSourceError(f"cannot download {entry.repo_id}: {one_line(err)}") from None
