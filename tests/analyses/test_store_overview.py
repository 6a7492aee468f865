"""analyses.store_overview: norms from the store equal numpy on the raw arrays; the figure is written."""

from __future__ import annotations

import numpy as np

from analyses.store_overview import main, overview
from nnsight_codi.store import StoreWriter


def test_overview_matches_numpy_and_writes_a_figure(tmp_path, capsys):
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(6, 3, 2, 4)).astype(np.float32)
    correct = np.array([True, False, True, True, False, False])
    path = tmp_path / "s.zarr"
    with StoreWriter(path, variables=["hidden", "correct"], config={"num_latents": 1},
                     coords={"example": [f"e{i}" for i in range(6)], "layer": [0, 1]}, sizes={"dim": 4}, chunk=4) as w:
        for idx in w.batches():
            w.write(idx, {"hidden": hidden[idx], "correct": correct[idx]})
    result = overview(path)
    expected = np.linalg.norm(hidden, axis=-1).mean(0).T  # (layer, step)
    np.testing.assert_allclose(np.array(result["mean_norm"]), expected, atol=1e-4)
    assert result["accuracy"] == correct.mean()
    assert main([str(path), "--out", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
