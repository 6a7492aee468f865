"""One steering/patching condition, validated, turned into step hooks, and run over a dataset.

A `Condition` names one intervention as the CLI and sweeps spell it (`mode` none | hidden | kv |
patch; the CoT-vector grid's direct | cot | single | continuous are modes of it too); `Resources` holds what conditions draw on (a vector set, a vector file, latent stats).
`build_hooks` turns a condition into `StepHook`s for one batch, `evaluate_conditions` runs
conditions over the same examples through the one loop and scores the answers; `run_conditions`
runs a batch's conditions as branches of one unsteered trunk (`branches.run_branches`), so the prompt
and the latents they share are computed once.

Example:
    >>> Condition("hidden", pair=(3, 5), coef=-1.0, extra_latent_step=True).name
    'hidden:3-5:c-1+x'
    >>> Condition("kv", pair=(1, 2), coef_k=0.5, coef_v=2.0).name
    'kv:1-2:k+0.5,v+2'
    >>> Condition("patch", patch="random").name
    'patch:random'
    >>> Condition("kv", pair=(1, 2), coef_k=1.0, coef_v=1.0, positions="latent3").name
    'kv:1-2:k+1,v+1:latent3'
    >>> Condition("none", extra_latent_step=True).name
    'none+x'
    >>> Condition("single", 3, 2.5).label(), Condition("direct").schedule    # the CoT vectors' conditions
    ('single:3:2.5', None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.scoring import extract_prediction, is_correct
from ..models.architecture import kv_geometry
from ..steps import Step, parse_step, resolve_num_latents, resolve_step
from ..store.vector_store import open_vectors
from ..tracing.batching import batches_by_length
from ..tracing.branches import Branch, run_branches
from ..tracing.loop import Masking, run_loop
from .patching import PATCH_KINDS, LatentStats, PatchLatent, latent_patch_values
from .steering import AddVector, KVSteer, check_kv_positions, check_layer, check_step
from .steering_vectors import check_pair, load_vector_file

if TYPE_CHECKING:
    from torch import Tensor

    from ..tracing.codi_model import CodiModel

MODES = ("none", "hidden", "kv", "patch")  # conditions of the CODI latent loop
PAUSE = "pause"  # `patch="pause"`: every latent fed the family's pause input (the pause control), `at` unused
SCHEDULES = ("single", "continuous")  # CoT-vector steering of a plain LM's generation
PROMPT_MODES = ("direct", "cot")  # a plain LM's prompt, unsteered
COT_MODES = (*PROMPT_MODES, *SCHEDULES)
# the order of `as_dict`'s keys (as sweeps and `steer` have always written them)
_DICT_ORDER = ("mode", "pair", "coef", "coef_k", "coef_v", "at", "layer", "extra_latent_step", "blocks", "positions",
               "patch", "vector_file")


def _num(x: float | None) -> str:
    return f"{x:+g}"


def _index(step: Step) -> int:
    """A step of a resolved condition (`Condition.resolve` has turned names into indices)."""
    assert isinstance(step, int), f"unresolved step {step!r}"
    return step


def _pair(pair: tuple[Step, Step]) -> tuple[int, int]:
    return _index(pair[0]), _index(pair[1])


@dataclass(frozen=True)
class Condition:
    """One intervention (or none): the one condition type of the latent loop's steering and
    patching (`mode` none | hidden | kv | patch) and of the CoT-vector grid (`mode` direct | cot,
    a plain prompt, or single | continuous, a steered direct prompt: `Condition("single", 3, 2.5)`).

    Args:
        mode: `none`, `hidden` (add `coef × v` at (`at`, `layer`)), `kv` (add Δkeys/Δvalues to the cache
            after the last latent) or `patch` (replace the latent input at step `at`); or, for the CoT
            vectors (`cot.steering`), `direct`, `cot`, `single` or `continuous` (`schedule`).
        layer: residual layer (hidden, default L; the CoT schedules' layer).
        coef: hidden steering coefficient (the CoT schedules' c; None for `direct` / `cot`).
        pair: `(A, B)` latents whose mean difference is the vector (hidden, kv); None with `vector_file`.
            Steps (`at`, `pair`) are indices or names (`bot`, `latent1`..`latentK`, `eot`); `resolve`
            turns names into indices once K is known (names in `name` are always indices).
        coef_k, coef_v: KV coefficients.
        at: the step to steer/patch (default K, the last latent).
        extra_latent_step: hidden mode: run one more latent after the last so the cache carries the edit
            (`none` with it: the unsteered run with K+1 latents, the control of the hidden rows).
        blocks: KV blocks 0..L-1 to edit (default all). positions: latents | last | all | latent<k>
            (latent k's cache entry alone: the KV twin of hidden steering at `at=k`).
        patch: random | mean | zero, or a safetensors file with `vector` (latent `at` only); or `pause`: every
            latent 1..K fed the model's pause input (its family's pause token embedding), the pause control.
        vector_file: a safetensors file with `vector` (hidden) or `keys`/`values` (kv).
    """

    mode: str = "none"
    layer: int | None = None
    coef: float | None = None
    pair: tuple[Step, Step] | None = None
    coef_k: float = 0.0
    coef_v: float = 0.0
    at: Step | None = None
    extra_latent_step: bool = False
    blocks: tuple[int, ...] | None = None
    positions: str = "latents"
    patch: str | None = None
    vector_file: str | None = None

    def __post_init__(self) -> None:
        if self.coef is None and self.mode not in COT_MODES:  # the latent loop's conditions: 0 by default
            object.__setattr__(self, "coef", 0.0)

    def __repr__(self) -> str:
        shown = [f"mode={self.mode!r}"] + [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)[1:]
                                           if getattr(self, f.name) != _DEFAULTS.get(f.name)
                                           and not (f.name == "coef" and self.coef == 0.0 and self.mode not in COT_MODES)]
        return f"Condition({', '.join(shown)})"

    @property
    def schedule(self) -> str | None:
        """`single` | `continuous` for a CoT-vector steering condition, else None."""
        return self.mode if self.mode in SCHEDULES else None

    @property
    def prompt_mode(self) -> str:
        """The prompt of a CoT-vector condition: `cot` for `cot`, else `direct`."""
        return "cot" if self.mode == "cot" else "direct"

    def label(self) -> str:
        """The name, with a CoT schedule's layer and coefficient (`single:3:2.5`)."""
        return self.name if self.schedule is None else f"{self.mode}:{self.layer}:{self.coef:g}"

    @property
    def name(self) -> str:
        if self.mode in COT_MODES:
            return self.mode
        src = f"{self.pair[0]}-{self.pair[1]}" if self.pair else (Path(self.vector_file).stem if self.vector_file else "")
        where = "" if self.at is None else f"@{self.at}"
        where += "" if self.layer is None else f"L{self.layer}"
        if self.mode == "none":
            return "none+x" if self.extra_latent_step else "none"
        if self.mode == "hidden":
            return f"hidden:{src}:c{_num(self.coef)}{where}" + ("+x" if self.extra_latent_step else "")
        if self.mode == "kv":
            extra = "" if self.positions == "latents" else f":{self.positions}"
            extra += "" if self.blocks is None else ":b" + ".".join(str(b) for b in self.blocks)
            return f"kv:{src}:k{_num(self.coef_k)},v{_num(self.coef_v)}{extra}"
        if self.patch == PAUSE:
            return "patch:pause"
        return f"patch:{Path(str(self.patch)).stem}{where}"

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        d = {k: values[k] for k in _DICT_ORDER if values[k] is not None}
        d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Condition:
        d = {k: v for k, v in d.items() if k != "name"}
        if d.get("blocks") is not None:
            d["blocks"] = tuple(int(x) for x in d["blocks"])
        if d.get("pair") is not None:
            d["pair"] = tuple(parse_step(x) for x in d["pair"])
        if d.get("at") is not None:
            d["at"] = parse_step(d["at"])
        return cls(**d)

    def resolve(self, num_latents: int) -> Condition:
        """This condition with step names (`latent2`, `eot`, …) turned into indices for K latents."""
        pair = None if self.pair is None else tuple(resolve_step(x, num_latents) for x in self.pair)
        at = None if self.at is None else resolve_step(self.at, num_latents)
        return replace(self, pair=pair, at=at)


_DEFAULTS = {f.name: f.default for f in fields(Condition)}


@dataclass
class ModelShape:
    """The sizes conditions are checked against."""

    num_layers: int
    num_latents: int
    hidden_size: int
    heads: int
    head_dim: int
    pause: Tensor | None = None  # `Float[Tensor, "dim"]`: the model's pause input (`CodiModel.pause_vector`)

    @classmethod
    def of(cls, codi: CodiModel, num_latents: int | None = None) -> ModelShape:
        cfg = codi._module.config
        heads, head_dim = kv_geometry(cfg)
        return cls(codi.num_layers, resolve_num_latents(num_latents, codi.num_latents), codi.hidden_size, heads,
                   head_dim, codi.pause_vector())


@dataclass
class Resources:
    """What conditions draw on: a vector set (`store.vectors.vectors_from_store`), latent stats, vector files."""

    vectors: Any = None
    stats: LatentStats | None = None
    seed: int = 0
    files: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_vectors(cls, vectors, seed: int = 0) -> Resources:
        stats = None
        if vectors is not None and "latent_mean" in vectors:
            stats = LatentStats(torch.from_numpy(np.asarray(vectors["latent_mean"].values)),
                                torch.from_numpy(np.asarray(vectors["latent_std"].values)))
        return cls(vectors=vectors, stats=stats, seed=seed)

    def file(self, path: str) -> dict:
        if path not in self.files:
            self.files[path] = load_vector_file(path)
        return self.files[path]


def check_condition(cond: Condition, shape: ModelShape, reference_pairs: bool = False) -> None:
    """What a condition's model shape alone decides (mode, layer, step, KV blocks and positions,
    patch kind), so a bad condition fails before any vectors are computed. With
    `reference_pairs` (the vectors will come from a reference run of this model), a pair must
    name latents 1..K. Step names are resolved first.
    """
    k = shape.num_latents
    cond = cond.resolve(k)
    if cond.mode not in MODES:
        raise ValueError(f"unknown mode {cond.mode!r}: use one of {', '.join(MODES)}")
    at = k if cond.at is None else _index(cond.at)
    if cond.mode == "hidden":
        check_layer(shape.num_layers if cond.layer is None else cond.layer, shape.num_layers, "hidden steering")
        check_step(at, k, "hidden steering")
    elif cond.mode == "kv":
        check_kv_positions(cond.positions, k)
        bad = [b for b in (cond.blocks or ()) if not 0 <= int(b) < shape.num_layers]
        if bad or (cond.blocks is not None and not cond.blocks):
            raise ValueError(f"KV steering: block(s) {bad or '[]'} out of range 0..{shape.num_layers - 1}")
    elif cond.mode == "patch":
        check_step(at, k, "latent patch", low=1, high=k)
        if not cond.patch:
            raise ValueError(f"patch mode needs --patch ({', '.join(PATCH_KINDS)}, {PAUSE} or a vector file)")
        if cond.patch == PAUSE and shape.pause is None:
            raise ValueError("the pause control needs the model's pause input (ModelShape.of(model))")
    if reference_pairs and cond.pair is not None and not cond.vector_file:
        bad = [x for x in _pair(cond.pair) if not 1 <= x <= k]
        if bad:
            raise ValueError(f"pair {cond.pair[0]},{cond.pair[1]}: latent(s) {bad} out of range 1..{k}")


def build_hooks(cond: Condition, shape: ModelShape, res: Resources, example_seeds: Sequence[int]) -> tuple[list, int]:
    """The hooks of `cond` for one batch (validated), and the number of latents to run."""
    check_condition(cond, shape)
    k = shape.num_latents
    cond = cond.resolve(k)
    if cond.mode == "none":
        return [], k + int(cond.extra_latent_step)
    at = k if cond.at is None else _index(cond.at)
    if cond.mode == "hidden":
        layer = shape.num_layers if cond.layer is None else cond.layer
        vector = _hidden_vector(cond, res, layer)
        hook = AddVector(vector, layer, [at], cast(float, cond.coef))  # hidden: a number (0.0 by default)
        hook.validate(shape.num_layers, k + int(cond.extra_latent_step), shape.hidden_size)
        return [hook], k + int(cond.extra_latent_step)
    if cond.mode == "kv":
        keys, values = _kv_vectors(cond, res)
        hook = KVSteer(keys, values, k, cond.coef_k, cond.coef_v, cond.blocks, cond.positions)
        hook.validate(shape.num_layers, shape.heads, shape.head_dim)
        return [hook], k
    # patch
    if cond.patch == PAUSE:  # the pause control: the same K positions, a constant fed back
        assert shape.pause is not None  # check_condition refused a shape without it
        hooks = [PatchLatent(step, shape.pause, PAUSE) for step in range(1, k + 1)]
        for hook in hooks:
            hook.validate(shape.num_layers, k, shape.hidden_size)
        return hooks, k
    if cond.patch == "zero":
        values, label = torch.zeros(len(example_seeds), shape.hidden_size), "zero"
    elif cond.patch in PATCH_KINDS:
        values = latent_patch_values(cond.patch, at, res.stats, len(example_seeds), list(example_seeds), res.seed)
        label = cond.patch
    else:
        values, label = res.file(str(cond.patch)).get("vector"), str(cond.patch)
        if values is None:
            raise ValueError(f"{cond.patch}: a patch file needs a `vector` tensor")
    hook = PatchLatent(at, values, label)
    hook.validate(shape.num_layers, k, shape.hidden_size)
    return [hook], k


def _hidden_vector(cond: Condition, res: Resources, layer: int) -> torch.Tensor:
    if cond.vector_file:
        vec = res.file(cond.vector_file).get("vector")
        if vec is None:
            raise ValueError(f"{cond.vector_file}: hidden steering needs a `vector` tensor (found keys/values)")
        return vec
    if cond.pair is None:
        raise ValueError("hidden steering needs --pair A,B (with vectors) or --vector FILE")
    if res.vectors is None:
        raise ValueError("hidden steering with --pair needs a vector set (--vectors STORE or a reference set)")
    a, b = check_pair(res.vectors, _pair(cond.pair))
    return torch.from_numpy(np.asarray(res.vectors["vector"].sel(pair_a=a, pair_b=b, layer=layer).values))


def _kv_vectors(cond: Condition, res: Resources) -> tuple[torch.Tensor, torch.Tensor]:
    if cond.vector_file:
        f = res.file(cond.vector_file)
        if "keys" not in f:
            raise ValueError(f"{cond.vector_file}: KV steering needs `keys` and `values` tensors")
        return f["keys"], f["values"]
    if cond.pair is None:
        raise ValueError("KV steering needs --pair A,B (with vectors) or --vector FILE")
    if res.vectors is None or "kv_vector" not in res.vectors:
        raise ValueError("KV steering with --pair needs a vector set with KV means (a reference capture with kv)")
    a, b = check_pair(res.vectors, _pair(cond.pair))
    kv = res.vectors["kv_vector"].sel(pair_a=a, pair_b=b)
    return (torch.from_numpy(np.asarray(kv.sel(kv_part="key").values)),
            torch.from_numpy(np.asarray(kv.sel(kv_part="value").values)))


def validate_conditions(conditions: Sequence[Condition], shape: ModelShape, res: Resources) -> None:
    """Build every condition's hooks once (batch of one): any bad input fails here, before any work."""
    names = [c.name for c in conditions]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"condition(s) given twice: {dups}")
    for cond in conditions:
        build_hooks(cond, shape, res, [0])


def run_condition(codi: CodiModel, prompts, cond: Condition, shape: ModelShape, res: Resources,
                  example_seeds: Sequence[int], max_new_tokens: int = 256, masking: Masking = "exact",
                  remote: Any = None) -> torch.Tensor:
    """Answer ids `Long[Tensor, "batch new"]` of one batch under `cond`."""
    hooks, k = build_hooks(cond, shape, res, example_seeds)
    with torch.inference_mode():
        tokens, _ = run_loop(codi, prompts, hooks, num_latents=k, max_new_tokens=max_new_tokens, masking=masking,
                             remote=remote)
    return tokens


def run_conditions(codi: CodiModel, prompts, conditions: Sequence[Condition], shape: ModelShape, res: Resources,
                   example_seeds: Sequence[int], max_new_tokens: int = 256, masking: Masking = "exact",
                   remote: Any = None, fork: bool = True) -> list[torch.Tensor]:
    """Answer ids of one batch under each of `conditions` (`run_condition` for each), computing the prefix the
    conditions share once (`branches.run_branches`): the unsteered run is the trunk; a KV condition forks
    at the last latent, a patch of latent k at step k, hidden steering at its step (with its extra latent).
    Equal to `run_condition` per condition, token for token; `fork=False` runs that instead.
    """
    if not fork:
        return [run_condition(codi, prompts, c, shape, res, example_seeds, max_new_tokens, masking, remote)
                for c in conditions]
    branches = []
    for cond in conditions:
        hooks, k = build_hooks(cond, shape, res, example_seeds)
        branches.append(Branch(hooks, k))
    with torch.inference_mode():
        runs = run_branches(codi, prompts, branches, num_latents=shape.num_latents, max_new_tokens=max_new_tokens,
                            masking=masking, remote=remote)
    return [tokens for tokens, _ in runs]


def score(codi: CodiModel, tokens: torch.Tensor, golds: Sequence[float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Decoded texts, numeric predictions and correctness of one batch."""
    texts = codi.decode(tokens)
    preds = np.array([extract_prediction(t) for t in texts], dtype=np.float64)
    correct = np.array([is_correct(p, g) for p, g in zip(preds, golds)], dtype=bool)
    return texts, preds, correct


def evaluate_conditions(codi: CodiModel, questions: Sequence[str], golds: Sequence[float],
                        conditions: Sequence[Condition], res: Resources, batch_size: int = 32,
                        num_latents: int | None = None, max_new_tokens: int = 256, masking: Masking = "exact",
                        remote: Any = None, progress: bool = True, fork: bool = True) -> dict[str, dict[str, Any]]:
    """Run every condition on the same examples; `{name: {"texts", "pred", "correct"}}` in input order.

    Batches outside, conditions inside (`run_conditions`): each batch's shared prefix is computed once.
    """
    shape = ModelShape.of(codi, num_latents)
    validate_conditions(conditions, shape, res)
    lengths = [len(codi.prompt_ids(q)) for q in questions]
    batches = batches_by_length(lengths, batch_size)
    n = len(questions)
    out = {c.name: {"texts": [""] * n, "pred": np.full(n, np.nan), "correct": np.zeros(n, bool)} for c in conditions}
    bar = tqdm(total=n * len(conditions), desc="steer", unit="run", disable=not progress)
    for idx in batches:
        prompts = codi.encode([questions[i] for i in idx])
        runs = run_conditions(codi, prompts, conditions, shape, res, idx, max_new_tokens, masking, remote, fork)
        for cond, tokens in zip(conditions, runs):
            texts, preds, correct = score(codi, tokens, [golds[i] for i in idx])
            for j, i in enumerate(idx):
                out[cond.name]["texts"][i] = texts[j]
            out[cond.name]["pred"][idx] = preds
            out[cond.name]["correct"][idx] = correct
            bar.update(len(idx))
    bar.close()
    return out


def capture_interventions(codi: CodiModel, interventions: Sequence[dict], num_latents: int | None = None,
                          seed: int = 0):
    """Hooks for a steered capture: `CaptureConfig.interventions` (condition dicts, each optionally with a
    `vectors` store path) → a function `hooks_for(example_indices) -> [StepHook]`, validated now.

    The hooks come before `Capture` in the loop's hook list, so the capture records the steered run.
    Conditions that change the number of latents (`extra_latent_step`) are refused: the store's steps
    would no longer be bot..eot of the model's K.
    """
    shape = ModelShape.of(codi, num_latents)
    conds: list[tuple[Condition, Resources]] = []
    for d in interventions:
        d = dict(d)
        path = d.pop("vectors", None)
        cond = Condition.from_dict(d)
        if cond.extra_latent_step:
            raise ValueError("a steered capture cannot use extra_latent_step (it changes the captured steps)")
        res = Resources.from_vectors(open_vectors(path) if path else None, seed=seed)
        build_hooks(cond, shape, res, [0])
        conds.append((cond, res))

    def hooks_for(example_indices: Sequence[int]) -> list:
        return [h for cond, res in conds for h in build_hooks(cond, shape, res, list(example_indices))[0]]

    return hooks_for
