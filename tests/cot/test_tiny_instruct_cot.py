"""The same checks on the shipped tiny instruct model (skipped while its asset is absent)."""

from __future__ import annotations

import cot_testlib as lib
import numpy as np
import pytest
import torch

from nnsight_codi.models.model_sources import TINY_INSTRUCT_DIR

pytestmark = pytest.mark.skipif(not (TINY_INSTRUCT_DIR / "config.json").is_file(),
                                reason="the tiny instruct model is not installed")


@pytest.fixture(scope="module")
def model():
    from nnsight_codi.loading import load_model

    return load_model("tiny-instruct")


def test_vectors_and_steering_on_tiny_instruct(model, tmp_path):
    from nnsight_codi.cot import ExtractConfig, Steering, extract_vectors, load_questions, load_vectors
    from nnsight_codi.cot.generation import generate_ids
    from nnsight_codi.cot.prompts import prompt_ids
    from nnsight_codi.cot.vector_estimation import stored_ids

    path = tmp_path / "v.zarr"
    extract_vectors(path, ExtractConfig(model="tiny-instruct", limit=3, max_new_tokens=12), model=model,
                    progress=False)
    ids = stored_ids(path)
    lm = model._module
    expected = torch.stack([lib.hand_means(lm, ids["cot"]["prompt"][i], ids["cot"]["generated"][i])
                            - lib.hand_means(lm, ids["direct"]["prompt"][i], ids["direct"]["generated"][i])
                            for i in range(3)]).mean(0).numpy()
    assert np.allclose(load_vectors(path), expected, atol=1e-4)
    layers = int(lm.config.num_hidden_layers)
    v = torch.as_tensor(load_vectors(path))[layers // 2]
    prompts = [prompt_ids(model.tokenizer, q, "direct") for q in load_questions("synthetic", "dev", 2)["question"]]
    plain, _ = generate_ids(model, prompts, max_new_tokens=10)
    assert generate_ids(model, prompts, [Steering(v, layers // 2, 0.0, "continuous")], max_new_tokens=10)[0] == plain
    steered, _ = generate_ids(model, prompts, [Steering(v, layers // 2, 2.0, "continuous")], max_new_tokens=10)
    handle, _ = lib.block_hook_add(lm, layers // 2, 2.0 * v)
    try:
        nocache = [lib.hand_generate(lm, p, 10, cache=False)[: len(g)] for p, g in zip(prompts, steered)]
    finally:
        handle.remove()
    assert nocache == steered
