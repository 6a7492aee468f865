"""The latent loop as it was before the performance work (issue #13), kept verbatim as the oracle.

Every call asked the LM for all hidden states and full-sequence logits, copied the logits to
float, and read "all rows finished?" on the host after every answer token. `as_oracle(codi)`
swaps a loaded `CodiModel` to this implementation (same object, same weights), so traces, hooks
and `run_loop` run the old code path unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from nnsight.intervention.envoy import traceable
from torch import Tensor

from nnsight_codi.models.kv_cache import cache_kwargs, output_cache
from nnsight_codi.tracing.codi_model import CodiModel
from nnsight_codi.tracing.loop import LatentLoopState


class OracleState(LatentLoopState):
    """The old `done`, `observe` and `generated`."""

    @property
    def done(self) -> bool:
        if len(self.tokens) >= self.max_new_tokens:
            return True
        return bool(self.finished.all()) and len(self.tokens) > 0

    def observe(self, last_hidden: Tensor, last_logits: Tensor) -> None:
        self._advance_mask()
        self.last_hidden = last_hidden
        if self.step >= self.eot_step:
            logits = last_logits.float().clone()
            if self.config.eot_id < logits.shape[-1]:
                logits[:, self.config.eot_id] = float("-inf")
            nxt = logits.argmax(-1)
            eos = self.config.eos_id
            if eos is not None:
                nxt = torch.where(self.finished, torch.full_like(nxt, eos), nxt)
                self.finished = self.finished | (nxt == eos)
            self.tokens.append(nxt)
            self.next_tokens = nxt
        self.step += 1

    def generated(self) -> Tensor:
        if not self.tokens:
            return torch.zeros(self.input_ids.shape[0], 0, dtype=torch.long, device=self.input_ids.device)
        return torch.stack(self.tokens, dim=1)


def oracle_state(codi, prompts, num_latents=None, max_new_tokens=256, masking="exact") -> OracleState:
    s = CodiModel.new_loop_state(codi, prompts, num_latents, max_new_tokens, masking, sync_every=1)
    return OracleState(input_ids=s.input_ids, attention_mask=s.attention_mask, config=s.config,
                       num_latents=s.num_latents, max_new_tokens=s.max_new_tokens, masking=s.masking)


class OracleCodi(CodiModel):
    """`CodiModel` with the pre-#13 driver."""

    def new_loop_state(self, prompts, num_latents=None, max_new_tokens=256, masking="exact", sync_every=None):
        return oracle_state(self, prompts, num_latents, max_new_tokens, masking)

    @traceable
    def latent_generate(self, prompts, num_latents=None, max_new_tokens=256, masking="exact",
                        output_attentions=False, full_outputs=False, grad=False) -> Tensor:
        # grad: the caller's autograd mode, as the real driver takes it; this oracle runs under whatever mode it is in
        state = self.new_loop_state(prompts, num_latents, max_new_tokens, masking)
        lm = self._module
        cache = None
        extra = {"output_attentions": True} if output_attentions else {}
        while not state.done:
            kwargs = self._step_inputs(state.call_kwargs(project=self._project))
            out = lm(**kwargs, **cache_kwargs(cache), use_cache=True, output_hidden_states=True, **extra)
            cache = output_cache(out)
            state.observe(out.hidden_states[-1][:, -1:], out.logits[:, -1])
        return state.generated()


@contextmanager
def as_oracle(codi) -> Iterator:
    """Run `codi` with the pre-#13 loop inside the block."""
    cls = type(codi)
    object.__setattr__(codi, "__class__", OracleCodi)
    try:
        yield codi
    finally:
        object.__setattr__(codi, "__class__", cls)
