"""Interventions compose with Capture: a steered capture records the steered run, and the store's
provenance lists the interventions."""

from __future__ import annotations

import numpy as np
import pytest
from factories import make_converted

from nnsight_codi.activation_capture import CaptureConfig, run_capture
from nnsight_codi.interventions import save_vector_file
from nnsight_codi.store import open_store


def test_steered_capture_records_the_edit_and_its_provenance(tmp_path):
    model = make_converted(tmp_path / "m", "gpt2", num_latents=2)
    v = np.random.default_rng(0).standard_normal(32).astype(np.float32)
    vec = save_vector_file(tmp_path / "v.safetensors", vector=v)
    common = dict(model=str(model), limit=5, batch_size=2, max_new_tokens=3,
                  variables=("hidden", "latent_input", "correct"))
    run_capture(tmp_path / "base.zarr", CaptureConfig(**common), progress=False)
    steer = {"mode": "hidden", "vector_file": str(vec), "at": 1, "layer": 1, "coef": 3.0}
    run_capture(tmp_path / "steered.zarr", CaptureConfig(**common, interventions=[steer]), progress=False)
    base, steered = open_store(tmp_path / "base.zarr"), open_store(tmp_path / "steered.zarr")
    hb, hs = base["hidden"].values, steered["hidden"].values                   # example, step, layer, dim
    np.testing.assert_array_equal(hs[:, 0], hb[:, 0])                          # bot: before the edit
    np.testing.assert_array_equal(hs[:, 1, :1], hb[:, 1, :1])                  # latent1, layer 0: before it
    np.testing.assert_allclose(hs[:, 1, 1] - hb[:, 1, 1], np.broadcast_to(3.0 * v, hb[:, 1, 1].shape), atol=1e-4)
    assert not np.allclose(hs[:, 2], hb[:, 2])                                 # later steps see the edit
    assert steered.attrs["interventions"] == [steer]
    with pytest.raises(ValueError, match="extra_latent_step"):
        run_capture(tmp_path / "bad.zarr", CaptureConfig(**common, interventions=[{**steer, "extra_latent_step": True}]),
                    progress=False)
    with pytest.raises(ValueError, match="out of range"):
        run_capture(tmp_path / "bad.zarr", CaptureConfig(**common, interventions=[{**steer, "layer": 7}]), progress=False)
    assert not (tmp_path / "bad.zarr").exists()
