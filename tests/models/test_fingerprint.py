"""The weights fingerprint: equal for equal weights, different after training, unknown on meta."""

from __future__ import annotations

import torch

from nnsight_codi.models.fingerprint import same_weights, weights_fingerprint
from nnsight_codi.store.fingerprints import diff_fingerprints


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(5000, 16), torch.nn.Linear(16, 16))


def test_equal_weights_equal_fingerprints_and_training_changes_it():
    a, b = _mlp(0), _mlp(0)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    assert weights_fingerprint(a) != weights_fingerprint(_mlp(1))
    opt = torch.optim.SGD(b.parameters(), lr=1e-3)
    b(torch.tensor([[1, 2, 3]])).sum().backward()
    opt.step()  # one step touches only 3 embedding rows and the linear layer: still noticed
    assert weights_fingerprint(a) != weights_fingerprint(b)
    # the embedding alone is sampled (80,000 values > 4,096 samples), shapes and dtypes always count
    assert weights_fingerprint(a) != weights_fingerprint(a.half())


def test_meta_models_have_no_fingerprint_and_unknown_never_conflicts():
    with torch.device("meta"):
        meta = _mlp(0)
    assert weights_fingerprint(meta) is None and weights_fingerprint(None) is None
    assert same_weights(None, "abc") and same_weights("abc", "abc") and not same_weights("abc", "abd")
    stored = {"config": {"model_id": "m", "model_weights": "abc"}}
    assert diff_fingerprints(stored, {"config": {"model_id": "m", "model_weights": None}}) == []
    assert diff_fingerprints({"config": {"model_id": "m"}}, stored) == []  # written before the key existed
    assert diff_fingerprints({"grid": 1}, {"grid": 1, "vector_table": "abc"}) == []  # a grid from before, too
    assert len(diff_fingerprints({"vector_table": "abc"}, {"vector_table": "abd"})) == 1
    diff = diff_fingerprints(stored, {"config": {"model_id": "m", "model_weights": "abd"}})
    assert len(diff) == 1 and "config.model_weights" in diff[0]
