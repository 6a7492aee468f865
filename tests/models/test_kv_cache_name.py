"""The KV cache goes by the name the installed transformers uses (`cache` from 5.24, before that
`past_key_values`), so no LM call of the library warns, on either end of the allowed range."""

from __future__ import annotations

import inspect
import logging
import warnings

import pytest
import torch
import transformers
from factories import make_converted
from transformers import GPT2LMHeadModel, LlamaForCausalLM

from nnsight_codi.loading import load_model
from nnsight_codi.models.kv_cache import CACHE_ARG, cache_kwargs, output_cache
from nnsight_codi.tracing.capture_hook import Capture
from nnsight_codi.tracing.loop import run_loop


def test_the_name_is_the_forward_argument_of_this_version():
    for cls in (GPT2LMHeadModel, LlamaForCausalLM):
        params = inspect.signature(cls.forward).parameters
        assert CACHE_ARG in params
        expected = "cache" if "cache" in params else "past_key_values"
        assert CACHE_ARG == expected, transformers.__version__


class _Deprecations(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        if "deprecated" in record.getMessage():
            self.messages.append(record.getMessage())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_no_lm_call_warns(family, tmp_path):
    codi = load_model(make_converted(tmp_path, family, num_latents=2))
    prompts = codi.encode(["Tom has 3 pens and buys 4 more . How many pens ?", "2 + 5 ?"])
    handler = _Deprecations()
    root = logging.getLogger("transformers")
    root.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plain = codi.latent_generate(prompts, max_new_tokens=3)
            hook = Capture(["hidden", "kv"], range(codi.num_layers + 1), codi.num_latents)
            traced, records = run_loop(codi, prompts, [hook], max_new_tokens=3)
            session, _ = run_loop(codi, prompts, [hook], max_new_tokens=3, remote="local")
            lm = codi._module
            with torch.inference_mode():
                out = lm(input_ids=prompts.input_ids, attention_mask=prompts.attention_mask, use_cache=True)
                again = lm(input_ids=prompts.input_ids[:, -1:], **cache_kwargs(output_cache(out)), use_cache=True)
    finally:
        root.removeHandler(handler)
    messages = [str(w.message) for w in caught if "past_key_values" in str(w.message) or "cache" in str(w.message)]
    assert not messages and not handler.messages
    assert torch.equal(plain, traced) and torch.equal(plain, session)
    assert any(name == "kv" for name, _, _ in records)
    assert output_cache(again).get_seq_length() == prompts.input_ids.shape[1] + 1
