"""Fabricated SIM-CoT CODI releases: a reference-layout CODI state (`codi.*` + LoRA + `prj.*`), a step
decoder (`decoder.*`, a causal LM of the base vocabulary V), optional `pj_in` / `pj_out`, written in any of
the release layouts (one file or shards, safetensors or bin, with or without an index, 0-byte config.json)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from factories import BASE_VOCAB, make_base_dir, reference_state_dict, tiny_lm
from torch import nn

from nnsight_codi.models.projection import build_projection

LAYOUTS = ("bin", "safetensors", "sharded-safetensors", "sharded-bin", "sharded-noindex")


def decoder_lm(family: str = "gpt2", seed: int = 3, dim: int = 32):
    """A random step decoder: the tiny architecture with the base vocabulary V (SIM-CoT does not resize it)."""
    lm = tiny_lm(family, seed, dim=dim)
    cfg = lm.config.__class__(**{**lm.config.to_dict(), "vocab_size": BASE_VOCAB})
    torch.manual_seed(seed)
    dec = type(lm)(cfg)
    with torch.no_grad():
        for p in dec.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5)
    return dec.eval()


def release_state(family: str = "gpt2", rank: int = 4, seed: int = 0, pj_in: bool = False, pj_out: bool = False,
                  drop_tied: bool = False) -> dict:
    """The state dict of a SIM-CoT CODI release and its parts (`lm` unmerged base, `lora`, `prj`, `decoder`)."""
    lm = tiny_lm(family, seed)
    torch.manual_seed(seed + 7)
    prj = build_projection(lm.config.hidden_size, 40)
    state, lora = reference_state_dict(lm, prj, family, rank)
    dec = decoder_lm(family, seed + 3, dim=48 if pj_in else 32)
    tied = {"lm_head.weight"} if drop_tied and lm.config.tie_word_embeddings else set()
    for key, value in dec.state_dict().items():
        if key not in tied:
            state["decoder." + key] = value.clone()
    parts = {"lm": lm, "lora": lora, "prj": prj.eval(), "decoder": dec, "pj_in": None, "pj_out": None}
    if pj_in:
        torch.manual_seed(seed + 11)
        linear = nn.Linear(lm.config.hidden_size, dec.config.hidden_size)
        state["pj_in.weight"], state["pj_in.bias"] = linear.weight.detach().clone(), linear.bias.detach().clone()
        parts["pj_in"] = linear.eval()
    if pj_out:
        torch.manual_seed(seed + 13)
        rank = BASE_VOCAB // 4  # SIM-CoT's LowRankProjector: [decoder vocab, V/4] @ [V/4, CODI vocab before resizing]
        u, v = torch.randn(BASE_VOCAB, rank) * 0.3, torch.randn(rank, BASE_VOCAB) * 0.3
        state["pj_out.U"], state["pj_out.V"] = u, v
        parts["pj_out"] = (u, v)
    parts["state"] = state
    parts["scale"] = 32.0 / rank
    parts["digest"] = state_digest(state)
    return parts


def state_digest(state: dict) -> str:
    """sha256 of every tensor (keys sorted, float64 bytes): ties recorded token ids to these exact weights."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().to(torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()


def write_release(directory: Path, state: dict, layout: str, shards: int = 3) -> Path:
    """Write `state` in `layout` (one of `LAYOUTS`) into `directory`, with a 0-byte config.json."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_bytes(b"")
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    if layout == "bin":
        torch.save(state, directory / "pytorch_model.bin")
        return directory
    if layout == "safetensors":
        save_file(state, str(directory / "model.safetensors"))
        return directory
    keys = list(state)
    chunks = [keys[i::shards] for i in range(shards)]
    safet = layout in ("sharded-safetensors", "sharded-noindex")
    stem, ext = ("model", "safetensors") if safet else ("pytorch_model", "bin")
    weight_map = {}
    for i, chunk in enumerate(chunks, 1):
        name = f"{stem}-{i:05d}-of-{shards:05d}.{ext}"
        part = {k: state[k] for k in chunk}
        if safet:
            save_file(part, str(directory / name))
        else:
            torch.save(part, directory / name)
        weight_map.update({k: name for k in chunk})
    if layout != "sharded-noindex":
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        (directory / f"{stem}.{ext}.index.json").write_text(json.dumps(index))
    return directory


def make_release(tmp: Path, layout: str = "bin", family: str = "gpt2", **kwargs) -> dict:
    """A release at `tmp/release` in `layout` + its base dir at `tmp/base`; the parts for independent code."""
    parts = release_state(family, **kwargs)
    parts["base_dir"] = make_base_dir(tmp / "base", family)
    if parts["pj_in"] is not None:  # a decoder of another width: its own architecture directory
        parts["decoder_base"] = tmp / "decoder-base"
        parts["decoder"].config.save_pretrained(parts["decoder_base"])
    parts["path"] = write_release(tmp / "release", parts["state"], layout)
    parts["family"] = family
    return parts


# -- SIM-CoT Coconut releases (`checkpoint_<n>` with `expainable_llm.*`) ---------------------------------------


EOS_LEAN = 5.65


def make_coconut_release(directory: Path, kind: str = "gpt2") -> dict:
    """A SIM-CoT Coconut release at `directory/release/checkpoint_28` (0-byte config.json beside it): a fabricated
    Coconut checkpoint (`models/coconut_fixtures.fabricate`) plus a step decoder `expainable_llm.*` (the base
    architecture, base vocabulary, weights seeded by name). Returns paths, the decoder and the digest."""
    import sys
    import zlib

    sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
    from coconut_fixtures import base_config, fabricate
    from transformers import AutoModelForCausalLM

    base, ckpt = fabricate(kind, directory)
    state = torch.load(ckpt, weights_only=True)
    vocab = int(state["embedding.weight"].shape[0]) - 3
    dec = AutoModelForCausalLM.from_config(base_config(kind, vocab))
    with torch.no_grad():
        for name, param in dec.named_parameters():
            gen = torch.Generator().manual_seed(zlib.crc32(("expainable_llm." + name).encode()))
            noise = torch.randn(tuple(param.shape), generator=gen)
            param.copy_(1.0 + 0.1 * noise if param.ndim == 1 and ("norm" in name or "ln_" in name) else
                        (0.1 if param.ndim == 1 else 0.5) * noise)
        # lean the final norm towards eos, so greedy steps end (SIM-CoT's own loop stops only at eos or 512 tokens)
        eos_row = dec.get_input_embeddings().weight[int(dec.config.eos_token_id)]
        norm = dec.transformer.ln_f if hasattr(dec, "transformer") else dec.model.norm
        if getattr(norm, "bias", None) is not None:
            norm.bias += EOS_LEAN * eos_row / eos_row.norm()
    dec.tie_weights()
    for key, value in dec.state_dict().items():
        state["expainable_llm." + key] = value.detach().clone()
    release = directory / "release"
    release.mkdir(parents=True, exist_ok=True)
    (release / "config.json").write_bytes(b"")
    path = release / "checkpoint_28"
    torch.save(state, path)
    return {"path": path, "base_dir": base, "decoder": dec.eval(), "digest": state_digest(state), "state": state}
