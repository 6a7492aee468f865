"""A planted-signal check of the CoT-vector pipeline: on a tiny model trained (seconds) so that the
reasoning mode is a known direction `d` at a known layer (`cot.planted`), extraction must recover
`d` (cosine >= 0.9, at that layer and not the others) and continuous steering with the extracted
vector must switch the direct prompt to writing chains, while a random direction of the same norm
must not. A null result on a real model then points at the model, not at the tool."""

import numpy as np
import pytest
import torch

from nnsight_codi.cot import Condition, ExtractConfig, Instructions, evaluate_condition, extract_vectors, load_vectors
from nnsight_codi.cot.planted import planted_questions, train_planted_model


@pytest.fixture(scope="module")
def planted():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the training's result is pinned at one thread
    try:
        return train_planted_model(steps=400, seed=0)
    finally:
        torch.set_num_threads(threads)


def _extract(planted, tmp_path, positions):
    cfg = ExtractConfig(model="planted", cot_instruction=planted.cot_word, direct_instruction=planted.direct_word,
                        greedy=True, positions=positions, max_new_tokens=16, limit=24)
    extract_vectors(tmp_path / f"{positions}.zarr", cfg, model=planted.model,
                    questions=planted_questions(24, seed=5), progress=False)
    return torch.tensor(load_vectors(tmp_path / f"{positions}.zarr"))


def _cosines(vectors, direction):
    return [float(torch.nn.functional.cosine_similarity(v, direction, dim=0)) for v in vectors]


@pytest.mark.parametrize("positions", ["last_prompt", "generated"])
def test_extraction_recovers_the_planted_direction(planted, tmp_path, positions):
    vectors = _extract(planted, tmp_path, positions)
    cos = _cosines(vectors, planted.direction)
    assert cos[planted.layer] >= 0.9, cos
    # at the planted site, and not elsewhere: the read-out is about the layer, not the stream as a whole
    assert max(range(len(cos)), key=lambda l: abs(cos[l])) == planted.layer
    assert all(abs(c) < 0.9 for l, c in enumerate(cos) if l != planted.layer), cos
    # its size is the planted contrast: the bit is +alpha (cot) vs -alpha (direct)
    proj = float(vectors[planted.layer] @ planted.direction)
    assert proj == pytest.approx(2 * planted.alpha, rel=0.25)


def test_steering_with_the_extracted_vector_switches_the_mode(planted, tmp_path):
    vectors = _extract(planted, tmp_path, "last_prompt")
    test = planted_questions(24, seed=9)  # questions the extraction never saw
    kw = dict(instructions=Instructions(planted.cot_word, planted.direct_word), max_new_tokens=16, progress=False)
    direct = evaluate_condition(planted.model, test, Condition("direct"), **kw)
    cot = evaluate_condition(planted.model, test, Condition("cot"), **kw)
    assert direct.reasoning_rate <= 0.1 and cot.reasoning_rate >= 0.9
    steered = evaluate_condition(planted.model, test, Condition("continuous", planted.layer, 1.0), vectors.numpy(), **kw)
    assert steered.reasoning_rate >= 0.9, steered.texts[:3]
    # control: a random direction of the same norm, at the same grid point, does not switch the mode
    gen = torch.Generator().manual_seed(11)
    rand = torch.randn(vectors.shape, generator=gen)
    rand = rand / rand.norm(dim=-1, keepdim=True) * vectors.norm(dim=-1, keepdim=True)
    control = evaluate_condition(planted.model, test, Condition("continuous", planted.layer, 1.0),
                                 np.nan_to_num(rand.numpy()), **kw)
    assert control.reasoning_rate <= 0.1, control.texts[:3]
