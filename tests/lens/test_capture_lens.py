"""Lens read-outs stored at capture time equal an independent computation from the store's
`hidden` and the model's weights; the per-store unembedding and vocabulary; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from nnsight_codi.cli import main as cli_main
from nnsight_codi.lens.readout import store_lens, topk_entropy
from nnsight_codi.lens.unembed import Unembedding
from nnsight_codi.store import open_store


def _independent(hidden: np.ndarray, lm) -> np.ndarray:
    """unembed(final_norm(h)) written out by hand from the GPT-2 weights (float64)."""
    ln, w = lm.transformer.ln_f, lm.lm_head.weight.detach().double().numpy()
    h = hidden.astype(np.float64)
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + ln.eps)
    h = h * ln.weight.detach().double().numpy() + ln.bias.detach().double().numpy()
    return h @ w.T


def test_stored_lens_equals_independent_computation(study_dir, tiny):
    ds = open_store(study_dir / "lens.zarr")
    hidden = ds["hidden"].values
    ids, probs, ent = topk_entropy(_independent(hidden, tiny._module), k=5)
    stored_ids = ds["lens_top_ids"].values
    assert stored_ids.shape == ids.shape == (12, 8, 5, 5)
    # ties aside, the ids agree; probabilities and entropies agree numerically
    assert (stored_ids == ids).mean() > 0.999
    np.testing.assert_allclose(ds["lens_top_probs"].values, probs, atol=1e-5)
    np.testing.assert_allclose(ds["lens_entropy"].values, ent, atol=1e-4)
    # the lens of the last layer at eot is the model's own first answer distribution: 'The'
    vocab = [str(s) for s in ds["token_string"].values]
    assert len(vocab) == tiny._module.lm_head.weight.shape[0]
    assert {vocab[i].strip() for i in stored_ids[:, -1, -1, 0]} <= {"The", "the"}


def test_offline_lens_from_store_alone(study_dir, tiny):
    ds = open_store(study_dir / "lens.zarr")
    stored = Unembedding.from_store(ds)
    model = Unembedding.from_model(tiny)
    assert stored.unembedding_hash() == model.unembedding_hash() == ds.attrs["unembed"]["hash"]
    off = store_lens(ds, k=5)
    assert (off["lens_top_ids"].values == ds["lens_top_ids"].values).mean() > 0.999
    np.testing.assert_allclose(off["lens_top_probs"].values, ds["lens_top_probs"].values, atol=1e-5)
    assert off["top_string"].values.shape == (12, 8, 5, 5)


def test_cli_lens_top_ids_alone(tmp_path, capsys):
    """`--what hidden,lens_top_ids` used to fail with "sizes missing for ['k']"."""
    rc = cli_main(["capture", "--model", "tiny", "--limit", "4", "--what", "hidden,lens_top_ids", "--lens-k", "3",
                   "--out", str(tmp_path / "s.zarr"), "--json"])
    assert rc == 0
    ds = open_store(tmp_path / "s.zarr")
    assert ds["lens_top_ids"].shape == (4, 8, 5, 3) and "lens_top_probs" not in ds and "token_string" in ds


@pytest.mark.parametrize("argv, message", [
    (["--what", "lens", "--lens-k", "0"], "--lens-k"),
    (["--what", "tuned_lens"], "--lens-path"),
    (["--what", "lens", "--lens-path", "/nonexistent/lens"], "not found"),
    (["--what", "lens", "--lens-k", "5000"], "vocabulary"),
])
def test_cli_bad_lens_input(tmp_path, capsys, argv, message):
    rc = cli_main(["capture", "--model", "tiny", "--limit", "2", "--out", str(tmp_path / "x.zarr"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.zarr" / "lens_top_ids").exists()


def test_offline_lens_needs_hidden_and_unembedding(study_dir):
    tuned = open_store(study_dir / "tuned-latents.zarr")
    with pytest.raises(ValueError, match="no `hidden`"):
        store_lens(tuned)
    acc = open_store(study_dir / "acc-k0.zarr")
    with pytest.raises(ValueError, match="no `hidden`"):
        store_lens(acc)
    assert "token_string" not in acc  # no lens read-outs, no vocabulary
