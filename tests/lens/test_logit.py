"""The logit lens on the last layer's pre-norm state reproduces the model's own logits."""

from __future__ import annotations

import nnsight
import pytest
import torch
from factories import make_converted

from nnsight_codi.lens import logit_lens, top_tokens
from nnsight_codi.loading import load_model
from nnsight_codi.tracing.hooks import block_list


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_last_layer_lens_equals_model_logits(tmp_path, family):
    codi = load_model(make_converted(tmp_path, family, num_latents=2))
    prompts = codi.encode(["tom has 3 pens .", "how many ?"])
    with codi.latent_generate(prompts, max_new_tokens=2) as tracer:
        pairs = nnsight.save([])
        for step in tracer.iter[:4]:
            last = block_list(codi)[codi.num_layers - 1].output[:, -1].clone()
            pairs.append((last, codi.output.logits[:, -1].clone()))
    for hidden, logits in pairs:
        torch.testing.assert_close(logit_lens(codi, hidden), logits, atol=1e-4, rtol=1e-4)
    ids, probs = top_tokens(pairs[0][1], k=3)
    assert ids.shape == (2, 3) and torch.all(probs[:, 0] >= probs[:, 1])
