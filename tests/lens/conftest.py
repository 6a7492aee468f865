"""Shared fixtures of the lens tests: the shipped tiny CODI and one small lens-study directory."""

from __future__ import annotations

import json

import pytest

N = 12


@pytest.fixture(scope="session")
def tiny():
    from nnsight_codi.loading import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_lens(tiny, tmp_path_factory):
    """A tuned lens trained for a few steps on latents of 48 training problems (seed 2)."""
    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
    from nnsight_codi.lens.lens_training import TrainConfig, collect, train_tuned_lens

    ds = load_eval_dataset("synthetic", limit=48, seed=2, **synthetic_options(tiny))
    data = collect(tiny, ds, "latents", progress=False)
    out = tmp_path_factory.mktemp("lens") / "latents"
    train_tuned_lens(tiny, data, TrainConfig(steps=40, batch_size=128), out=out, progress=False,
                     meta={"data": "latents"})
    return out


@pytest.fixture(scope="session")
def study_dir(tiny, tiny_lens, tmp_path_factory):
    """What runs/lens_study.py writes, small: lens.zarr, tuned-latents.zarr, acc-k{0,2}.zarr, truth.jsonl."""
    from nnsight_codi.activation_capture import CaptureConfig, run_capture
    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
    from nnsight_codi.lens.values import dataset_truth

    out = tmp_path_factory.mktemp("study")
    ds = load_eval_dataset("synthetic", limit=N, seed=1, **synthetic_options(tiny))
    (out / "truth.jsonl").write_text("".join(json.dumps(t) + "\n" for t in dataset_truth(ds)))
    common = dict(model="tiny", limit=N, seed=1, batch_size=N, max_new_tokens=8, lens_k=5)
    run_capture(out / "lens.zarr", CaptureConfig(
        variables=("hidden", "lens", "unembed", "answer_pred", "answer_gold", "correct"), **common),
        codi=tiny, progress=False)
    run_capture(out / "tuned-latents.zarr", CaptureConfig(variables=("lens", "correct"), lens_path=str(tiny_lens),
                                                          **common), codi=tiny, progress=False)
    for k in (0, 2):
        run_capture(out / f"acc-k{k}.zarr", CaptureConfig(variables=("answer_pred", "answer_gold", "correct"),
                                                          num_latents=k, **common), codi=tiny, progress=False)
    return out
