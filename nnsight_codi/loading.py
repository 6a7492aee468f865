"""The one place that assembles models: `load_model(spec, device=..., dtype=...)`.

`nnsight_codi.models` reads formats and weights (reference checkpoints, converted directories, the
registry); `nnsight_codi.tracing` defines `CodiModel` and its base + LoRA-interventions variant;
this module puts the two together.

`spec` may be:
- `"tiny"`: the tiny CODI model shipped inside this package (offline, ~1 s);
- `"tiny-instruct"`: the tiny instruct LM shipped inside this package (a plain HF causal LM with a
  chat template; see `nnsight_codi.instruct`); its predecessors as `"tiny-instruct-v2"`, `"tiny-instruct-v1"`;
- a converted CODI directory (has `codi.json`) — the normal, fast path;
- a reference CODI checkpoint (`pytorch_model.bin` / `model.safetensors`, or a directory
  holding one), converted in memory (needs `base=`, or a registry entry naming the base);
- a registry hub id (`zen-E/CODI-gpt2`, …): downloaded (needs network) then converted;
- anything else: a plain Hugging Face causal LM (hub id or local directory), returned as an
  nnsight `TransformersModel`.

Example:
    >>> codi = load_model("tiny")                           # doctest: +SKIP
    >>> codi.answer(["Tom has 3 pens . He gets 4 more . How many pens does Tom have now ?"])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from nnsight import TransformersModel
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .errors import one_line
from .models.checkpoint import (
    _problem_report,
    _tied_keys,
    base_ties_embeddings,
    check_head,
    convert_reference_checkpoint,
    family_of,
    find_checkpoint_file,
    read_state_dict,
    reference_codi_config,
)
from .models.coconut_checkpoint import find_coconut_checkpoint, load_coconut_parts
from .models.codi_config import CodiConfig, CodiFormatError
from .models.converted import is_converted_dir, load_projection
from .models.devices import resolve_device, resolve_dtype
from .models.hub import download_checkpoint, fail_fast_offline
from .models.lora_checkpoint import base_checks, base_has_weights, split_reference_state_dict
from .models.model_sources import (
    SHIPPED_ALIASES,
    SHIPPED_INSTRUCT,
    SHIPPED_LATENT,
    TINY_MODEL_DIR,
    check_model_source,
    looks_like_path,
    with_hub_errors,
)
from .models.projection import projection_from_state_dict
from .models.registry import CheckpointEntry, lookup
from .models.simcot import _keys, coconut_step_decoder, convert_release, download_release, is_release_dir, simcot_entry
from .models.soft_thinking import MARKERS, SoftThinking
from .tracing.codi_model import CodiModel
from .tracing.lora_interventions import LoraAdapter, LoraCodiModel
from .tracing.remote import PortableProjection, is_ndif, ndif_errors
from .tracing.soft_thinking_model import SoftThinkingModel

LORA_MODES = ("merged", "interventions")


def check_lora_mode(lora_mode: str) -> str:
    """Return `lora_mode` if it is one of `LORA_MODES`; raise ValueError otherwise."""
    if lora_mode not in LORA_MODES:
        raise ValueError(f"unknown lora_mode {lora_mode!r}; choose one of {', '.join(LORA_MODES)}")
    return lora_mode


def load_converted(directory: str | Path, device: str | torch.device | None = "cpu",
                   dtype: str | torch.dtype | None = "float32", ndif_repo_id: str | None = None):
    """Load a converted CODI directory as a `CodiModel` (no network); `ndif_repo_id`: its LM's hub id on NDIF."""
    directory = Path(directory)
    config = CodiConfig.load(directory)
    prj: torch.nn.Module = load_projection(directory) if config.use_prj else torch.nn.Identity()
    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    try:
        # with output_loading_info, (model, info); transformers' stub says model only
        lm, info = cast(Any, AutoModelForCausalLM.from_pretrained(directory, dtype=torch_dtype, output_loading_info=True,
                                                                  ignore_mismatched_sizes=True))  # reported below
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError, RuntimeError) as err:
        raise CodiFormatError(f"{directory}: cannot load the merged LM or tokenizer: {one_line(err)}") from err
    _check_loading_info(info, directory)
    tied = config.extra.get("tied_head", base_ties_embeddings(lm.config))
    if bool(tied) != base_ties_embeddings(lm.config):
        raise CodiFormatError(f"{directory}: codi.json records the output head {'tied' if tied else 'untied'}, "
                              f"config.json has tie_word_embeddings={base_ties_embeddings(lm.config)}")
    check_head(lm, bool(tied), directory)
    _check_special_ids(config, lm.config.vocab_size, directory)
    width = prj[1].in_features if isinstance(prj, torch.nn.Sequential) else lm.config.hidden_size
    if lm.config.hidden_size != width:
        raise CodiFormatError(f"{directory}: projection expects width {width}, LM hidden size is {lm.config.hidden_size}")
    tokenizer.padding_side = "left"
    lm = lm.to(device).eval()
    return CodiModel(lm, tokenizer=tokenizer, task="text-generation", codi_config=config, prj=prj,
                     ndif_repo_id=ndif_repo_id)


def _check_loading_info(info: dict, where: Any) -> None:
    """Missing or mis-shaped weights of a converted directory are an error naming them (never random init)."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(f"{item[0]} (file {tuple(item[1])}, expected {tuple(item[2])})"
                        if isinstance(item, (tuple, list)) and len(item) == 3 else str(item)
                        for item in (info.get("mismatched_keys") or []))
    problems = ([f"missing keys: {', '.join(missing)}"] if missing else []) + \
               ([f"mis-shaped keys: {', '.join(mismatched)}"] if mismatched else [])
    if problems:
        raise CodiFormatError(f"{where}: the weights do not match config.json: " + "; ".join(problems))


def _check_special_ids(config: CodiConfig, vocab_size: int, where: Any) -> None:
    for name in ("pad_id", "bot_id", "eot_id", "eos_id", "latent_id"):
        value = getattr(config, name)
        if value is not None and value >= vocab_size:
            raise CodiFormatError(f"{where}: {name}={value} is outside the vocabulary (size {vocab_size})")


NUMERICS = ("default", "reference")


def check_numerics(numerics: str, lora_mode: str) -> str:
    """Validate `numerics` and return the LoRA mode it runs in (`"reference"` computes LoRA unmerged:
    `"interventions"`; otherwise `lora_mode` itself).
    """
    if numerics not in NUMERICS:
        raise ValueError(f"unknown numerics {numerics!r}; choose one of {', '.join(NUMERICS)}")
    return "interventions" if numerics == "reference" else lora_mode


def load_model(spec: str | Path, device: str | torch.device | None = "cpu",
               dtype: str | torch.dtype | None = "float32", base: str | None = None,
               lora_mode: str = "merged", numerics: str = "default", ndif_repo_id: str | None = None,
               **kwargs: Any):
    """Load a CODI model (`CodiModel`) or a plain HF causal LM (`TransformersModel`). See module doc.

    `ndif_repo_id` (CLI `--ndif-model`) names the hub id NDIF hosts the model's LM under, for runs
    with `remote=True`: the merged LM, or for `lora_mode="interventions"` the base (default: the
    registry's / `base` hub id). Plain LMs ignore it.

    `lora_mode="interventions"` runs a reference CODI checkpoint as its base model + LoRA applied
    as nnsight interventions (`tracing/lora.py`; the shape NDIF can run); the default
    `"merged"` merges LoRA into the weights. `numerics="reference"` reproduces the reference code's
    arithmetic in `dtype` (what it publishes in bfloat16): LoRA unmerged, computed in `dtype` as
    peft does (it implies `lora_mode="interventions"`), and every floating buffer cast as
    `module.to(dtype)` casts it (Llama's rotary `inv_freq` included); it needs a reference
    checkpoint. Errors are one line: unknown device, a path that does not exist (and is not a
    known hub id), a hub model that cannot be fetched.
    """
    spec_str = SHIPPED_ALIASES.get(str(spec), str(spec))  # `tiny-instruct-v3` is the shipped `tiny-instruct`
    check_lora_mode(lora_mode)
    lora_mode = check_numerics(numerics, lora_mode)
    if numerics == "reference":
        if spec_str == "tiny" or spec_str in SHIPPED_INSTRUCT or is_converted_dir(Path(spec_str).expanduser()):
            raise ValueError(f"numerics='reference' needs a reference CODI checkpoint with its LoRA tensors; "
                             f"{spec_str} is a merged model")
        kwargs["reference_numerics"] = True
    resolve_device(device)  # a bad device fails before any loading
    if ndif_repo_id:
        kwargs["ndif_repo_id"] = ndif_repo_id
    resolve_dtype(dtype)
    interventions = lora_mode == "interventions"
    load_checkpoint = load_lora_interventions if interventions else load_reference_checkpoint
    if spec_str in SHIPPED_LATENT and spec_str != "tiny":  # the other shipped latent-reasoning models (tiny-coconut)
        if interventions or numerics == "reference":
            raise ValueError(f"the shipped {spec_str} is a merged model: lora_mode/numerics do not apply")
        if not is_converted_dir(SHIPPED_LATENT[spec_str]):
            raise FileNotFoundError(f"the shipped model {spec_str} is missing at {SHIPPED_LATENT[spec_str]}")
        return load_converted(SHIPPED_LATENT[spec_str], device, dtype, ndif_repo_id)
    if spec_str == "tiny":
        if interventions:
            raise ValueError("the shipped tiny model is a merged (converted) model: lora_mode='interventions' "
                             "needs a reference CODI checkpoint with its LoRA tensors")
        if not is_converted_dir(TINY_MODEL_DIR):
            raise FileNotFoundError(f"the shipped tiny CODI model is missing at {TINY_MODEL_DIR}")
        return load_converted(TINY_MODEL_DIR, device, dtype, ndif_repo_id)
    if spec_str in SHIPPED_INSTRUCT:  # a shipped tiny instruct LM: a plain HF causal LM
        directory = SHIPPED_INSTRUCT[spec_str]
        if not (directory / "config.json").is_file():
            raise FileNotFoundError(f"the shipped tiny instruct model {spec_str} is missing at {directory}")
        return load_plain_lm(directory, device, dtype)
    path = Path(spec_str).expanduser()
    if simcot_entry(spec_str) is not None or (path.exists() and is_simcot_release(path)):
        return load_simcot(spec_str, base=base, device=device, dtype=dtype, lora_mode=lora_mode, **kwargs)
    if path.exists():
        if is_converted_dir(path):
            if interventions:
                raise ValueError(f"{path} is a converted (merged) CODI directory: lora_mode='interventions' needs "
                                 "the reference checkpoint with its LoRA tensors")
            return load_converted(path, device, dtype, ndif_repo_id)
        coconut = find_coconut_checkpoint(path)
        if coconut is not None:
            if interventions or numerics == "reference":
                raise ValueError(f"{coconut} is a Coconut checkpoint (a full LM, no LoRA): lora_mode='interventions' "
                                 "and numerics='reference' are for CODI checkpoints")
            if base is not None:
                check_model_source(base, "base")
            return with_hub_errors(lambda: load_coconut_checkpoint(coconut, base=base, device=device, dtype=dtype,
                                                                    num_latents=kwargs.get("num_latents"),
                                                                    ndif_repo_id=ndif_repo_id), f"base model {base}")
        ckpt = find_checkpoint_file(path)
        if ckpt is not None:
            if base is not None:
                check_model_source(base, "base")
            return with_hub_errors(lambda: load_checkpoint(ckpt, base=base, device=device, dtype=dtype, **kwargs),
                                    f"base model {base}")
        if path.is_dir() and (path / "config.json").is_file():
            if interventions:
                raise ValueError(f"{path} is a plain HF model: lora_mode='interventions' needs a CODI checkpoint")
            return load_plain_lm(path, device, dtype)
        raise CodiFormatError(
            f"{path}: neither a converted CODI directory (codi.json), a CODI checkpoint "
            "(pytorch_model.bin / model.safetensors with codi.* keys) nor a HF model directory"
        )
    entry = lookup(spec_str)
    if entry is not None:
        if base is not None:
            check_model_source(base, "base")
        ckpt = download_checkpoint(entry)
        fail_fast_offline(str(base or entry.base), what="base model")
        if entry.extra.get("latent_family") == "coconut":
            return with_hub_errors(lambda: load_coconut_checkpoint(
                ckpt, base=base or entry.base, device=device, dtype=dtype,
                num_latents=kwargs.get("num_latents", entry.num_latents), source=entry.repo_id,
                ndif_repo_id=ndif_repo_id), f"base model {base or entry.base}")
        return with_hub_errors(lambda: load_checkpoint(ckpt, base=base or entry.base, entry=entry, device=device,
                                                        dtype=dtype, **kwargs), f"base model {base or entry.base}")
    if looks_like_path(spec_str):
        raise FileNotFoundError(f"{spec_str}: no such file or directory, and not a known hub id")
    if "/" not in spec_str:
        raise ValueError(
            f"unknown model {spec_str!r}: not 'tiny', not an existing path, not a known CODI checkpoint "
            "and not a hub id (owner/name)"
        )
    if interventions:
        raise ValueError(f"{spec_str} is not a known CODI checkpoint: lora_mode='interventions' needs a reference "
                         "CODI checkpoint (a registry hub id or a local pytorch_model.bin / model.safetensors)")
    fail_fast_offline(spec_str)  # no network and not cached: say so now, not after the hub client's retries
    return with_hub_errors(lambda: load_plain_lm(spec_str, device, dtype), f"model {spec_str}")


def is_simcot_release(path: Path) -> bool:
    """Whether `path` is a SIM-CoT release (a directory of any of its layouts, or one file with `decoder.*` keys)."""
    if path.is_file():
        return any(k.startswith("decoder.") for k in _keys(path))
    return is_release_dir(path)


def load_simcot(spec: str | Path, base: str | None = None, device: Any = "cpu", dtype: Any = "float32",
                lora_mode: str = "merged", num_latents: int | None = None, ndif_repo_id: str | None = None,
                decoder_base: str | None = None, **unused: Any):
    """A SIM-CoT CODI release (local path in any layout, or a known hub id) as a `CodiModel` whose
    `step_decoder` attribute is its `models.simcot.StepDecoder`.
    """
    if lora_mode != "merged" or unused.get("reference_numerics"):
        raise ValueError(f"{spec}: a SIM-CoT release loads merged only (lora_mode='merged', numerics='default')")
    entry = simcot_entry(str(spec))
    path = Path(str(spec)).expanduser()
    if entry is not None and not path.exists():
        if base is not None:
            check_model_source(base, "base")
        path = download_release(entry)
    release = with_hub_errors(lambda: convert_release(path, base or (entry.base if entry else None), entry,
                                                      num_latents=num_latents, dtype=resolve_dtype(dtype),
                                                      decoder_base=decoder_base),
                              f"base model {base or (entry.base if entry else None)}")
    target = resolve_device(device)
    lm = release.lm.to(target)  # pyright: ignore[reportArgumentType]  (transformers wraps .to with functools.wraps)
    codi = CodiModel(lm, tokenizer=release.tokenizer, task="text-generation", codi_config=release.config,
                     prj=release.prj, ndif_repo_id=ndif_repo_id)
    object.__setattr__(codi, "step_decoder", release.decoder.to(target))
    return codi


def load_soft_thinking(spec: str | Path, num_latents: int = 8, top_k: int = 10, temperature: float = 1.0,
                       cold_entropy: float | None = None, cold_patience: int = 1,
                       markers: tuple[str, str] | None = None, device: Any = "cpu", dtype: Any = "float32"):
    """An instruct LM (`tiny-instruct`, a hub id, a local HF directory) run under Soft Thinking: a
    `tracing.soft_thinking.SoftThinkingModel` (family `soft_thinking`).

    `markers` are the thinking's opening and closing tokens (each one token of the tokenizer); by default the
    first pair of `models.soft_thinking.MARKERS` the tokenizer has. `cold_entropy` (nats) and `cold_patience`
    set the cold stop (None: every row thinks K steps). Errors (not an instruct model, markers missing) are one line.
    """
    soft = SoftThinking(top_k=top_k, temperature=temperature, cold_entropy=cold_entropy, cold_patience=cold_patience)
    if num_latents < 0:
        raise ValueError(f"num_latents must be >= 0, got {num_latents}")
    plain = load_model(spec, device=device, dtype=dtype)
    if isinstance(plain, CodiModel):
        raise ValueError(f"{spec} is a latent-reasoning (CODI-family) model; Soft Thinking runs a plain instruct LM")
    tokenizer = plain.tokenizer
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"{spec}: the tokenizer has no chat template (Soft Thinking needs an instruct model)")
    vocab = tokenizer.get_vocab()
    pairs = [markers] if markers is not None else list(MARKERS)
    found = next((p for p in pairs if all(m in vocab for m in p)), None)
    if found is None:
        raise ValueError(f"{spec}: the tokenizer has none of the thinking markers {pairs}; pass markers=(open, close) "
                         "naming two of its tokens")
    bot, eot = (int(vocab[m]) for m in found)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{spec}: the tokenizer has no eos token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = CodiConfig(pad_id=int(pad), bot_id=bot, eot_id=eot, num_latents=int(num_latents), remove_eos=True,
                        use_prj=False, eos_id=int(tokenizer.eos_token_id), family="soft_thinking",
                        latent_family="soft_thinking", source=str(spec),
                        extra={"markers": list(found), "soft_thinking": {"top_k": top_k, "temperature": temperature,
                                                                         "cold_entropy": cold_entropy,
                                                                         "cold_patience": cold_patience}})
    return SoftThinkingModel(plain._module, tokenizer=tokenizer, task="text-generation", codi_config=config,
                             prj=nn.Identity(), soft=soft)


def load_plain_lm(spec: str | Path, device: str | torch.device | None = "cpu",
                  dtype: str | torch.dtype | None = "float32") -> TransformersModel:
    """A plain HF causal LM as an nnsight `TransformersModel` (hub id or local directory)."""
    device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    lm = AutoModelForCausalLM.from_pretrained(str(spec), dtype=torch_dtype).to(device).eval()  # pyright: ignore[reportArgumentType]  (transformers wraps .to with functools.wraps)
    tokenizer = AutoTokenizer.from_pretrained(str(spec), padding_side="left")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return TransformersModel(lm, tokenizer=tokenizer, task="text-generation")


def load_reference_checkpoint(file: str | Path, base: str | Path | None = None, entry: CheckpointEntry | None = None,
                              device: Any = "cpu", dtype: Any = "float32", lora_alpha: float | None = None,
                              num_latents: int | None = None, ndif_repo_id: str | None = None):
    """A reference checkpoint as a ready `CodiModel` (converted in memory)."""
    lm, tokenizer, prj, config = convert_reference_checkpoint(
        file, base, entry, lora_alpha=lora_alpha, num_latents=num_latents, dtype=resolve_dtype(dtype)
    )
    lm = lm.to(resolve_device(device))  # pyright: ignore[reportArgumentType]  (transformers wraps .to with functools.wraps)
    return CodiModel(lm, tokenizer=tokenizer, task="text-generation", codi_config=config, prj=prj,
                     ndif_repo_id=ndif_repo_id)


def load_coconut_checkpoint(file: str | Path, base: str | Path | None = None, device: Any = "cpu",
                            dtype: Any = "float32", num_latents: int | None = None, source: str | None = None,
                            ndif_repo_id: str | None = None) -> CodiModel:
    """A Coconut checkpoint (its own training output, or SIM-CoT's release) as a ready `CodiModel` of the
    coconut family (`models.coconut`: validated key by key; tokenizer = base + the three latent tokens).
    """
    parts = load_coconut_parts(file, base, num_latents, resolve_dtype(dtype), source)
    lm = parts.lm.to(resolve_device(device))
    model = CodiModel(lm, tokenizer=parts.tokenizer, task="text-generation", codi_config=parts.config,
                      prj=torch.nn.Identity(), ndif_repo_id=ndif_repo_id)
    if parts.step_decoder_keys:  # a SIM-CoT Coconut release: its step decoder, for the step-decoder lens
        decoder = coconut_step_decoder(file, parts.lm, int(parts.config.eos_id or 0), resolve_dtype(dtype))
        object.__setattr__(model, "step_decoder", None if decoder is None else decoder.to(resolve_device(device)))
    return model


def load_lora_interventions(file: str | Path, base: str | Path | None, entry: CheckpointEntry | None = None,
                            device: Any = "cpu", dtype: Any = "float32", lora_alpha: float | None = None,
                            num_latents: int | None = None, reference_numerics: bool = False,
                            ndif_repo_id: str | None = None):
    """A reference CODI checkpoint as a `LoraCodiModel`: the base LM + `LoraAdapter`, weight-checked.

    `reference_numerics=True` also casts every floating buffer to `dtype` as the reference's
    `model.to(dtype)` does (Llama's rotary `inv_freq`, which loading in `dtype` keeps in float32).

    The local base LM is `base` when it is a directory holding weights (e.g. a saved copy of the
    hosted model), else it is rebuilt from the checkpoint's own `base_layer`/embedding tensors. A
    run with `remote=True` uses the hosted model `base` (hub id; registry default) instead and
    checks it before the first session.
    """
    if base is None:
        raise CodiFormatError(
            f"{file}: running a CODI checkpoint as base + interventions needs its base model (--base: hub id or "
            "local HF directory); the registry supplies it for known checkpoints")
    torch_dtype = resolve_dtype(dtype)
    state = read_state_dict(file)
    base_config = AutoConfig.from_pretrained(str(base))
    family = family_of(base_config.model_type)
    vocab = int(base_config.vocab_size)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(base_config)
    split = split_reference_state_dict(state, skeleton, family)
    if split.rank is None:
        raise CodiFormatError(f"{file}: no LoRA tensors (…lora_A/lora_B.default.weight); use --lora-mode merged")
    alpha = lora_alpha if lora_alpha is not None else (entry.lora_alpha if entry else 32.0)
    checks = base_checks(split, skeleton)
    if base_has_weights(base):
        lm = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch_dtype)
    else:
        lm = AutoModelForCausalLM.from_config(base_config, dtype=torch_dtype)
        missing, unexpected = lm.load_state_dict(split.base_state, strict=False)
        missing = [k for k in missing if k not in _tied_keys(lm)]
        if missing or unexpected:
            raise CodiFormatError(_problem_report(missing, list(unexpected), []))
        lm.tie_weights()
    del skeleton
    tokenizer = AutoTokenizer.from_pretrained(str(base), padding_side="left")
    prj = projection_from_state_dict(split.prj_state)
    rows = split.rows.float()
    head_rows = rows if split.head_rows is None else split.head_rows.float()  # tied unless the base unties them
    adapter = LoraAdapter(dict(split.lora), alpha / split.rank, rows, head_rows, vocab, split.embed_path,
                          split.head_path, PortableProjection(prj))
    config = reference_codi_config(tokenizer, vocab, family, file, base, entry, num_latents,
                                   {"lora_rank": split.rank, "lora_alpha": alpha, "lora_mode": "interventions",
                                    "lora_modules": len(split.lora)})
    base_id = str(base) if not Path(str(base)).expanduser().exists() else (entry.base if entry else None)
    if reference_numerics:
        lm = lm.to(torch_dtype)  # pyright: ignore[reportArgumentType]  (buffers too, as the reference's `model.to(torch.bfloat16)`; transformers wraps .to)
        config.extra["numerics"] = "reference"
    lm = lm.to(resolve_device(device)).eval()  # pyright: ignore[reportArgumentType]  (transformers wraps .to with functools.wraps)
    model = LoraCodiModel(lm, tokenizer=tokenizer, task="text-generation", codi_config=config, prj=prj,
                          adapter=adapter, checks=checks, ndif_repo_id=ndif_repo_id or base_id)
    model.session_model(None)  # the local base is checked before any work
    return model


def load_codi_model(spec: str, device: str = "cpu", dtype: str = "float32", base: str | None = None,
                    lora_mode: str = "merged", numerics: str = "default", ndif_repo_id: str | None = None):
    """Load `spec` and insist that it is a CODI model."""
    model = load_model(spec, device=device, dtype=dtype, base=base, lora_mode=lora_mode, numerics=numerics,
                       ndif_repo_id=ndif_repo_id)
    if not isinstance(model, CodiModel):
        raise ValueError(f"{spec} is a plain LM, not a CODI model (no codi.json / prj)")
    return model


def load_instruct_model(spec: str, device: str = "cpu", dtype: str = "float32", remote: Any = None):
    """A plain HF causal LM as `TransformersModel`: local weights, or (NDIF) a stock wrapper by hub id."""
    if is_ndif(remote):
        with ndif_errors(remote, spec):
            return TransformersModel(str(spec), task="text-generation")
    model = load_model(spec, device=device, dtype=dtype)
    if isinstance(model, CodiModel):
        raise ValueError(f"{spec} is a CODI model; CoT vectors are for plain instruct LMs")
    return model
