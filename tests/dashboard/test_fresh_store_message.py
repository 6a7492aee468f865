"""A fresh store without any per-position variable: the dashboard says why it shows no tokens (not that
the store predates the token coordinates)."""

from __future__ import annotations

import numpy as np

from nnsight_codi.dashboard import MISSING, page_data
from nnsight_codi.store import StoreWriter, open_store


def _store(path, variables, sizes):
    n = 3
    coords = {"example": [f"e{i}" for i in range(n)], "question": ["a b", "c d", "e f"],
              "step_name": ["bot", "latent1", "eot"], "source_token": [["a", "b"], ["c", "d"], ["e", "f"]],
              "source_kind": [["prompt", "prompt"]] * n}
    data = {"answer_gold": np.arange(n, dtype=np.float64), "answer_pred": np.arange(n, dtype=np.float64),
            "correct": np.ones(n, dtype=bool), "prompt_length": np.full(n, 2, dtype=np.int32)}
    if "prompt_ids" in variables:
        data["prompt_ids"] = np.tile(np.arange(sizes["position"], dtype=np.int32), (n, 1))
    with StoreWriter(path, variables=variables, coords=coords, sizes=sizes, config={"model_id": "t"}, chunk=n) as w:
        w.write(np.arange(n), data)
    return open_store(path)


def test_fresh_store_without_positions_names_the_real_reason(tmp_path):
    ds = _store(tmp_path / "a.zarr", ["answer_pred", "answer_gold", "correct"], {})
    missing = page_data(ds)["missing"]
    assert MISSING["tokens"] not in missing  # it was not captured "before source_token existed"
    assert any("no per-position variable" in m and "--what prompt_ids" in m for m in missing), missing


def test_store_with_positions_shows_its_tokens(tmp_path):
    ds = _store(tmp_path / "b.zarr", ["answer_pred", "answer_gold", "correct", "prompt_ids"], {"position": 2})
    assert "source_token" in ds.coords
    assert not any("token strings" in m for m in page_data(ds)["missing"])
