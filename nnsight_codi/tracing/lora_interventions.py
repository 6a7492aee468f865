"""A CODI checkpoint run as its (hosted) base model + interventions: `lora_mode="interventions"`.

NDIF hosts base models (GPT-2, Llama-3.x), not CODI checkpoints. A reference CODI checkpoint is its
base model plus what `LoraAdapter` carries, and each piece becomes an nnsight intervention inside
every trace of the session executor (`tracing/session.py`):

- **LoRA**: every target module's output gets `scale · (x @ Aᵀ) @ Bᵀ` added (`x` = the module's
  input, `A: [r, in]`, `B: [out, r]`, `scale = alpha / r`). On activations this formula is the same
  for `nn.Linear` and GPT-2's `Conv1D` (peft stores A/B as `[r, in]`/`[out, r]` for both; only a
  *merged* Conv1D weight is transposed, `W + scale · (B A)ᵀ`); shapes are checked per orientation.
- **The three added tokens** (pad = V, bot = V+1, eot = V+2, V = the base vocabulary): ids ≥ V are
  fed to the base as token 0 and the embedding module's output is replaced at those positions by
  the checkpoint's rows (exactly what the merged model's embedding returns there). Projected latents
  are fed as `inputs_embeds`; the projection (in `LoraAdapter.prj`) runs in the session body.
- **Logits**: the base unembedding gives V columns; the three added tokens' logits
  (`h_final @ rows[V:V+3]ᵀ`, the checkpoint's tied rows) are appended, so every step sees the same
  V+3 logits as the merged model and the loop's greedy argmax (eot masked, as the reference) is
  over the same set: pad/bot can win exactly when they would win on the merged model. Nothing is
  assumed about "never in practice".

Everything the adapter holds (A/B, rows, prj) is cast to the remote model's dtype and travels once
per session request: the session block is one request and the adapter is one of its locals;
on the server the tensors are moved to the model's device on first use and kept (per session).

Before any work, `verify_base` reads checksums of a few base tensors (embedding rows < V, the first
and last LoRA module's `base_layer` weight, the final norm) in one small trace and refuses a base
whose weights differ from the checkpoint's `base_layer`/embedding tensors.

Example:
    >>> codi = load_model("zen-E/CODI-gpt2", lora_mode="interventions")        # doctest: +SKIP
    >>> tokens, _ = run_loop(codi, codi.encode(questions), remote=True)        # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nnsight
import torch
from nnsight import TransformersModel
from torch import Tensor

from ..models.lora_checkpoint import BaseCheck, BaseMismatchError, checksum
from .codi_model import CodiModel
from .loop import Masking, run_loop
from .remote import PortableProjection, by_value, register_package
from .session import SessionExecutor


def envoy_at(model: Any, path: str) -> Any:
    """The submodule (envoy) at a dotted path, `transformer.h.0.attn.c_attn` → `model.transformer.h[0].attn.c_attn`."""
    obj = model
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


@dataclass
class LoraAdapter:
    """The checkpoint-only tensors of a CODI model, applied as interventions on its base LM.

    Attributes:
        lora: `{module path: (A Float[Tensor, "r in"], B Float[Tensor, "out r"])}` in forward order.
        scale: LoRA `alpha / r`.
        rows: `Float[Tensor, "3 dim"]` embedding rows of pad, bot, eot (ids V, V+1, V+2).
        head_rows: `Float[Tensor, "3 dim"]` their unembedding rows (the same tensor when tied).
        base_vocab: V, the base model's vocabulary size.
        embed_path, head_path: module paths of the input embedding and the unembedding.
        prj: the latent projection (`PortableProjection`).
    """

    lora: dict[str, tuple[Tensor, Tensor]]
    scale: float
    rows: Tensor
    head_rows: Tensor
    base_vocab: int
    embed_path: str
    head_path: str
    prj: PortableProjection
    placed: dict = field(default_factory=dict)

    # -- client side --------------------------------------------------------------
    def cast(self, dtype: torch.dtype) -> LoraAdapter:
        """A copy with every tensor in `dtype` (the remote model's), on CPU: what a request carries."""
        def conv(t: Tensor) -> Tensor:
            return t.detach().to("cpu", dtype).contiguous()

        prj = by_value(self.prj.inner, share=False).to("cpu", dtype)
        tied = self.head_rows is self.rows
        rows = conv(self.rows)
        return LoraAdapter({k: (conv(a), conv(b)) for k, (a, b) in self.lora.items()}, self.scale, rows,
                           rows if tied else conv(self.head_rows), self.base_vocab, self.embed_path,
                           self.head_path, PortableProjection(prj))

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data a request carries (LoRA, rows, projection)."""
        tensors = [t for pair in self.lora.values() for t in pair] + [self.rows]
        if self.head_rows is not self.rows:
            tensors.append(self.head_rows)
        tensors += list(self.prj.parameters())
        return sum(t.numel() * t.element_size() for t in tensors)

    @property
    def project(self) -> PortableProjection:
        return self.prj

    # -- session side (runs where the model is: here or on the NDIF server) --------
    def feed(self, inputs: dict) -> dict:
        """The call's kwargs for the base LM: token ids ≥ V (pad/bot/eot) become 0 (their rows are set in `intervene`)."""
        ids = inputs.get("input_ids")
        if ids is None:
            return inputs
        out = dict(inputs)
        out["input_ids"] = torch.where(ids >= self.base_vocab, torch.zeros_like(ids), ids)
        return out

    def _placed(self, key: str, tensor: Tensor, like: Tensor) -> Tensor:
        """`tensor` on `like`'s device/dtype, moved once per session and kept."""
        cached = self.placed.get(key)
        if cached is None or cached.device != like.device or cached.dtype != like.dtype:
            cached = tensor.to(device=like.device, dtype=like.dtype)
            self.placed[key] = cached
        return cached

    def intervene(self, model: Any, inputs: dict) -> None:
        """Inside one LM call's trace (its own invoke): added-token rows, LoRA deltas, added-token logits.

        `inputs` are the call's kwargs before `feed` (with the original ids ≥ V).
        """
        ids = inputs.get("input_ids")
        if ids is not None and bool((ids >= self.base_vocab).any()):
            embed = envoy_at(model, self.embed_path)
            emb = embed.output                                                  # [batch, seq, dim]
            ids = ids.to(emb.device)
            rows = self._placed("rows", self.rows, emb)
            picked = rows[(ids - self.base_vocab).clamp(0, rows.shape[0] - 1)]
            embed.output = torch.where((ids >= self.base_vocab).unsqueeze(-1), picked, emb)
        for name, (a, b) in self.lora.items():
            module = envoy_at(model, name)
            x = module.input                                                    # [batch, seq, in]
            a = self._placed(name + ".A", a, x)
            b = self._placed(name + ".B", b, x)
            module.output = module.output + self.scale * ((x @ a.T) @ b.T)      # [batch, seq, out]
        head = envoy_at(model, self.head_path)
        hidden = head.input                                                     # final-normed [batch, seq, dim]
        head_rows = self._placed("head_rows", self.head_rows, hidden)
        logits = head.output
        head.output = torch.cat([logits, (hidden @ head_rows.T).to(logits.dtype)], dim=-1)  # [batch, seq, V+3]


# -- the base weight check ------------------------------------------------------------------

def read_base_checksums(model: Any, checks: list[BaseCheck], remote: bool | str | None = None) -> list[tuple]:
    """One small trace on `model` (a `TransformersModel`, maybe remote): `(shape, dtype, checksum)` per check."""
    kwargs = {"remote": remote} if remote else {}
    if remote:
        register_package()
    paths = [(c.path.rpartition(".")[0], c.path.rpartition(".")[2], c.ckpt_dtype) for c in checks]
    with model.trace(input_ids=torch.zeros(1, 1, dtype=torch.long), **kwargs):
        found = nnsight.save([])
        for module_path, leaf, ckpt_dtype in paths:
            param = getattr(envoy_at(model, module_path), leaf)
            found.append((tuple(param.shape), str(param.dtype), checksum(param, ckpt_dtype).cpu()))
    return list(found)


def verify_base(model: Any, checks: list[BaseCheck], remote: bool | str | None = None,
                name: str = "the base model") -> torch.dtype | None:
    """Refuse (`BaseMismatchError`) a base whose weights are not the checkpoint's; return its dtype (None when
    `checks` is empty).
    """
    found = read_base_checksums(model, checks, remote)
    problems = []
    dtype = None
    for check, (shape, dtype_name, got) in zip(checks, found):
        dtype = getattr(torch, dtype_name.replace("torch.", ""))
        if tuple(shape) != check.shape:
            problems.append(f"{check.path} has shape {tuple(shape)}, the checkpoint's {check.shape}")
            continue
        want = check.expected.get(dtype, check.expected[torch.float32])
        tol = 1e-10 * (float(want[1].abs()) * 97 + 1.0)  # float64 sums in another order: ~1e-15 relative
        if float((got.double() - want).abs().max()) > tol:
            problems.append(f"{check.path} differs (checksum {float(got[0]):.6g} vs {float(want[0]):.6g})")
    if problems:
        raise BaseMismatchError(
            f"{name} is not the base this CODI checkpoint was trained on: " + "; ".join(problems)
            + " — pass the right --base (hub id of the exact base model) or use --lora-mode merged")
    return dtype


class LoraCodiModel(CodiModel):
    """A CODI model executed as its base LM + `LoraAdapter` interventions (session executor only).

    Everything a `CodiModel` offers (encode, decode, num_layers, `run_loop` with step hooks,
    capture, steering) works unchanged; its `executor` is always the session executor, locally
    (`remote=None`), serialised (`remote="local"`) or on NDIF (`remote=True`, hosted base
    `ndif_repo_id`, default the registry's / `--base` hub id).
    """

    def __init__(self, *args: Any, adapter: LoraAdapter, checks: list[BaseCheck], ndif_repo_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, ndif_repo_id=ndif_repo_id, **kwargs)
        object.__setattr__(self, "lora_adapter", adapter)
        object.__setattr__(self, "base_checks", checks)
        object.__setattr__(self, "_sessions", {})

    def executor(self, remote: bool | str | None = None) -> SessionExecutor:
        """Always the session executor, with the base LM for `remote` (weight-checked once) and the adapter
        in that model's dtype.
        """
        model, adapter = self._session(remote)
        return SessionExecutor(self, remote, model, adapter)

    def session_model(self, remote: bool | str | None = None) -> TransformersModel:
        """The stock base LM for a session (local module or the hosted repo), weight-checked once, carrying
        `codi_adapter` (the adapter in that model's dtype).
        """
        return self._session(remote)[0]

    def _session(self, remote: bool | str | None) -> tuple[TransformersModel, LoraAdapter]:
        """`(base LM, adapter cast to its dtype)` for `remote`, built and weight-checked once per key."""
        hosted = bool(remote) and remote != "local"
        key = ("hosted", self.ndif_repo_id, remote) if hosted else ("local", remote)
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        if hosted:
            if not self.ndif_repo_id:
                raise ValueError("a remote run of base + interventions needs the base model's hub id "
                                 "(--base, or a registry checkpoint)")
            model = TransformersModel(self.ndif_repo_id, tokenizer=self.tokenizer, task="text-generation")
            name = f"the hosted base {self.ndif_repo_id}"
        else:
            model = TransformersModel(self._module, tokenizer=self.tokenizer, task="text-generation")
            name = f"the base model {self.codi_config.base}"
        adapter = self.lora_adapter.cast(dtype=verify_base(model, self.base_checks, remote, name))
        # the session model also carries its adapter (`session_model(remote).codi_adapter`, for callers of
        # `run_latent_session`); the executor is handed it as an argument
        object.__setattr__(model, "codi_adapter", adapter)
        self._sessions[key] = (model, adapter)
        return self._sessions[key]

    def latent_generate(self, *args: Any, **kwargs: Any):
        raise TypeError("a CODI model in lora_mode='interventions' runs through the session executor: use "
                        "nnsight_codi.tracing.loop.run_loop(codi, prompts, hooks, remote=...) or codi.answer(...)")

    @torch.inference_mode()
    def answer(self, questions, num_latents: int | None = None, max_new_tokens: int = 256,
               masking: Masking = "exact", remote: bool | str | None = None) -> list[str]:
        tokens, _ = run_loop(self, self.encode(questions), num_latents=num_latents,
                             max_new_tokens=max_new_tokens, masking=masking, remote=remote)
        return self.decode(tokens)
