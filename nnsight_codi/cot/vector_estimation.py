"""CoT vectors (Zhang & Viteri): v_l = mean over questions of (mean over positions of the CoT
prompt's layer-l residual stream − the same for the direct prompt).

`extract_vectors` asks every question in both modes through the chat template, generates a
continuation (greedy, or sampled with a seed), reads every layer's residual stream over the
generated positions (or all positions, or the last prompt position), and streams, batch by
batch, into a resumable store (`StoreWriter`; rerun the same call to resume). The store holds,
per question, `steering_diff` (layer × dim) and for each mode (the `step` dim: `cot`, `direct`)
the prompt and generated ids (padded with -1), so `recompute_vectors` can rebuild everything
without sampling again; once complete it also holds `steering_vector` (layer × dim), the mean of
the differences.

Example:
    >>> cfg = ExtractConfig(model="tiny-instruct", dataset="synthetic", limit=64)   # doctest: +SKIP
    >>> summary = extract_vectors("out/vectors.zarr", cfg)                        # doctest: +SKIP
    >>> load_vectors("out/vectors.zarr").shape                                    # (layer, dim) # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ..loading import load_instruct_model
from ..models.fingerprint import WEIGHTS_KEY, model_weights
from ..runspec import run_spec
from ..store import StoreWriter, open_store
from ..tracing.plain_lm import PlainLM
from ..tracing.remote import check_remote
from .generation import POSITION_SETS, generate_ids, position_means
from .prompts import MODES, Instructions, prompt_ids, require_chat_template
from .questions import load_questions

if TYPE_CHECKING:
    from jaxtyping import Float, Int
    from nnsight import TransformersModel

STORE_PAD = -1
VECTOR_VAR = "steering_vector"
STORE_VARIABLES = ("steering_diff", "mode_prompt_ids", "generated_ids")


@dataclass
class ExtractConfig(run_spec(model="tiny-instruct", split="train", seed=0, limit=64, batch_size=16)):
    """What defines a vector store (the run: `runspec.RunSpec`; all fields but device/batch_size/remote go into its
    fingerprint).
    """

    cot_instruction: str = Instructions.cot
    direct_instruction: str = Instructions.direct
    greedy: bool = False
    sample_seed: int = 0
    max_new_tokens: int = 48
    positions: str = "generated"
    dtype: str = "float32"
    remote: Any = None
    synthetic: dict[str, Any] = field(default_factory=dict)

    @property
    def instructions(self) -> Instructions:
        return Instructions(self.cot_instruction, self.direct_instruction)

    def fingerprint(self, model: TransformersModel) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for volatile in ("device", "batch_size", "remote"):
            data.pop(volatile)
        data["model_id"] = PlainLM.of(model).model_id if model is not None else self.model
        data[WEIGHTS_KEY] = model_weights(model) if model is not None else None
        data["kind"] = "cot_vectors"
        return data


def check_extract_config(config: ExtractConfig) -> None:
    """Raise `ValueError` unless `config.positions` names a known position set."""
    if config.positions not in POSITION_SETS:
        raise ValueError(f"positions must be one of {', '.join(POSITION_SETS)}, got {config.positions!r}")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {config.max_new_tokens}")


def extract_vectors(out: str | Path, config: ExtractConfig, model: TransformersModel | None = None, questions=None,
                    progress: bool = True) -> dict[str, Any]:
    """Extract CoT vectors into the store at `out` (resumes; a finished store is reused).

    `questions` (a dataset with `id`, `question`) overrides `config.dataset`. Returns a summary:
    `path`, `examples`, `written_now`, `seconds`, `num_layers`, `hidden_size`, `vector_norms`.
    """
    start = time.perf_counter()
    check_extract_config(config)
    remote = check_remote(config.remote)
    if questions is None:
        questions = load_questions(config.dataset, split=config.split, limit=config.limit, seed=config.seed,
                                   **config.synthetic)
    if model is None:
        model = load_instruct_model(config.model, config.device, config.dtype, remote)
    assert model is not None  # for checkers: nnsight exports `TransformersModel` lazily, so it reads as Any
    tok = model.tokenizer
    require_chat_template(tok)
    texts = list(questions["question"])
    prompts = {mode: [prompt_ids(tok, q, mode, config.instructions) for q in texts] for mode in MODES}
    width = max(len(p) for ps in prompts.values() for p in ps) + config.max_new_tokens
    lm = PlainLM.of(model)
    layers = lm.num_layers
    writer = StoreWriter(out, variables=list(STORE_VARIABLES), config=config.fingerprint(model),
                         coords={"example": [str(i) for i in questions["id"]], "question": texts,
                                 "step_name": list(MODES), "layer": list(range(layers + 1))},
                         sizes={"dim": lm.hidden_size, "position": width}, num_layers=layers,
                         chunk=config.batch_size, pad_id=STORE_PAD)
    written = 0
    with writer:
        todo = writer.pending()
        bar = tqdm(total=len(todo), desc="extract CoT vectors", unit="q", disable=not progress)
        for idx in writer.batches(config.batch_size):
            means, pids, gids = {}, {}, {}
            for m, mode in enumerate(MODES):
                batch = [prompts[mode][i] for i in idx]
                seed = config.sample_seed * 1_000_003 + int(idx[0]) * 2 + m
                gen, _ = generate_ids(model, batch, max_new_tokens=config.max_new_tokens, greedy=config.greedy,
                                      seed=seed, remote=remote)
                means[mode] = position_means(model, batch, gen, config.positions, remote=remote)
                pids[mode], gids[mode] = batch, gen
            writer.write(idx, {
                "steering_diff": (means["cot"] - means["direct"]).numpy(),
                "mode_prompt_ids": _id_table([pids[m] for m in MODES], width),
                "generated_ids": _id_table([gids[m] for m in MODES], width),
                "prompt_length": np.array([len(p) for p in pids["cot"]], dtype=np.int32),
            })
            written += len(idx)
            bar.update(len(idx))
        bar.close()
        complete = writer.is_complete
    if complete:
        write_vector(out)
    vectors = load_vectors(out) if complete else None
    return {"path": str(out), "examples": len(questions), "written_now": written, "complete": complete,
            "seconds": round(time.perf_counter() - start, 3), "num_layers": layers,
            "hidden_size": lm.hidden_size,
            "vector_norms": None if vectors is None else np.linalg.norm(vectors, axis=-1).round(4).tolist()}


def _id_table(per_mode: list[list[list[int]]], width: int) -> Int[np.ndarray, "batch mode position"]:
    """`Int[ndarray, "batch mode position"]`, left-aligned, padded with -1."""
    n = len(per_mode[0])
    table = np.full((n, len(per_mode), width), STORE_PAD, dtype=np.int32)
    for m, rows in enumerate(per_mode):
        for i, row in enumerate(rows):
            table[i, m, : len(row)] = row
    return table


def write_vector(path: str | Path) -> None:
    """Add `steering_vector` (layer × dim) = mean of `steering_diff` over the complete examples."""
    import zarr

    ds = open_store(path)
    vector = ds["steering_diff"].astype("float64").mean("example").astype("float32").values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        arr = group.create_array(VECTOR_VAR, shape=vector.shape, dtype="float32", overwrite=True,
                                 dimension_names=("layer", "dim"))
        arr[:] = vector
        arr.attrs["description"] = "CoT vector per layer: mean over examples of steering_diff (CoT - direct)"
        zarr.consolidate_metadata(str(path), zarr_format=3)


def load_vectors(path: str | Path) -> Float[np.ndarray, "layer dim"]:
    """The CoT vectors `Float[ndarray, "layer dim"]` of a complete vector store."""
    ds = open_store(path)
    if "steering_diff" not in ds:
        raise ValueError(f"{path} is not a CoT vector store (no steering_diff)")
    if VECTOR_VAR not in ds:
        raise ValueError(f"{path}: extraction is not complete (rerun extract to resume)")
    return np.asarray(ds[VECTOR_VAR].values, dtype=np.float32)


def stored_ids(path: str | Path) -> dict[str, dict[str, list[list[int]]]]:
    """Per mode, per example: `{"prompt": [[ids]...], "generated": [[ids]...]}` keyed by mode."""
    ds = open_store(path)
    out: dict[str, Any] = {}
    for s, mode in enumerate(ds["step_name"].values):
        p = ds["mode_prompt_ids"].isel(step=s).values
        g = ds["generated_ids"].isel(step=s).values
        out[str(mode)] = {"prompt": [[int(t) for t in row if t != STORE_PAD] for row in p],
                          "generated": [[int(t) for t in row if t != STORE_PAD] for row in g]}
    return out


def recompute_vectors(path: str | Path, model: TransformersModel, positions: str | None = None, batch_size: int = 16,
                      remote: Any = None) -> Float[np.ndarray, "layer dim"]:
    """Rebuild the vectors from the stored prompt and generated ids (no sampling): `(layer, dim)`."""
    ds = open_store(path)
    where: str = positions or ds.attrs["config"]["positions"]
    ids = stored_ids(path)
    n = len(ids["cot"]["prompt"])
    diffs = []
    for a in range(0, n, batch_size):
        sl = slice(a, a + batch_size)
        means = {m: position_means(model, ids[m]["prompt"][sl], ids[m]["generated"][sl], where, remote)
                 for m in MODES}
        diffs.append((means["cot"] - means["direct"]).double().numpy())
    return np.concatenate(diffs).mean(0).astype(np.float32)
