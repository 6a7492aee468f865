"""Small stores for the dashboard tests, written with `StoreWriter` (no model): attention rows that
sum to 1 over each step's visible positions, source coordinates, answers and, as the lens issue's
contract has it, `lens_top_ids` / `lens_top_probs` (example, step, layer, k) plus `token_string`
(token_id)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from nnsight_codi.store import StoreWriter
from nnsight_codi.store.positions import source_labels

K = 3          # latents
LAYERS = [0, 1, 2]
VOCAB = [f"w{i}" for i in range(40)] + ["<b>&\"x'", "</script>", " 42", "  "]
WORDS = ["Tom", "has", "12", "apples", ".", "He", "eats", "3", "<i>", "&amp;", "How", "many", "?"]


def questions(n: int, rng: np.random.Generator) -> list[list[str]]:
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(5, 12))))
        if i == 1:
            words += ["</script><script>alert(1)</script>"]
        out.append(words)
    return out


def make_store(path: Path, n: int = 12, attention: bool = True, lens: bool = True, tokens: bool = True,
               answers: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    qs = questions(n, rng)
    labels = [source_labels(q + ["<bot>"], K) for q in qs]
    width = max(len(t) for t, _ in labels) + 1
    variables = ["prompt_ids"]
    if attention:
        variables.append("attention")
    if answers:
        variables += ["answer_pred", "answer_gold", "correct"]
    if lens:
        variables += ["lens_top_ids", "lens_top_probs"]
    coords = {"example": [f"ex-{i}" for i in range(n)], "question": [" ".join(q) for q in qs],
              "step_name": ["bot"] + [f"latent{k}" for k in range(1, K + 1)] + ["eot"], "layer": LAYERS}
    if tokens:
        coords["source_token"] = [t for t, _ in labels]
        coords["source_kind"] = [k for _, k in labels]
    steps = K + 2
    data: dict[str, np.ndarray] = {}
    lengths = np.array([len(q) + 1 for q in qs], dtype=np.int32)
    data["prompt_length"] = lengths
    data["prompt_ids"] = np.stack([np.pad(np.arange(p), (0, width - p), constant_values=-1) for p in lengths])
    if attention:
        att = np.full((n, steps, width), np.nan, dtype=np.float32)
        for i, p in enumerate(lengths):
            for s in range(steps):
                visible = p + s  # bot is position p-1: step s's query is p-1+s
                att[i, s, :visible] = rng.dirichlet(np.full(visible, 0.3))
        data["attention"] = att
    if answers:
        gold = rng.integers(0, 50, n).astype(np.float64)
        pred = np.where(rng.random(n) < 0.6, gold, gold + 1)
        pred[3 % n] = np.nan
        data.update(answer_gold=gold, answer_pred=pred, correct=pred == gold)
    if lens:
        ids = np.stack([rng.permutation(len(VOCAB))[:5] for _ in range(n * steps * len(LAYERS))])
        probs = np.sort(rng.dirichlet(np.ones(8), n * steps * len(LAYERS))[:, :5], axis=-1)[:, ::-1]
        data["lens_top_ids"] = ids.reshape(n, steps, len(LAYERS), 5).astype(np.int32)
        data["lens_top_probs"] = probs.reshape(n, steps, len(LAYERS), 5).astype(np.float32)
    with StoreWriter(path, variables=variables, coords=coords, sizes={"position": width, "k": 5},
                     config={"model_id": "test", "dataset": "unit"}, chunk=n) as w:
        w.write(np.arange(n), {k: v for k, v in data.items()})
    if lens:
        add_token_strings(path, VOCAB)
    return path


def add_token_strings(path: Path, vocab: list[str]) -> None:
    """Append `token_string` (dim `token_id`) to a store, keeping its attributes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attrs = dict(xr.open_zarr(path).attrs)
        xr.Dataset({"token_string": ("token_id", np.array(vocab, dtype=object))}, attrs=attrs).to_zarr(
            path, mode="a", consolidated=True, zarr_format=3)
