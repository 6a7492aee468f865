"""Build the latent dashboard: one self-contained static HTML page from a capture store.

The page (template `page.html` + `dashboard.js` + `dashboard.css`, inlined) needs no network
and works from a file URL. Its data is one compact JSON object embedded in the page: a string
table, and per example the question's source tokens (indices into the table) and kinds, gold,
prediction, correct, each step's top-K attended positions with weights (units of 1e-4), and
each step's logit-lens top tokens with probabilities at every captured layer (units of 1e-4), and, for a
SIM-CoT release captured with `--what step_decoder`, each step's decoded reasoning step (`step_text`).
Nothing needs the model or torch: attention comes from `attention`, tokens from the
`source_token` / `source_kind` coordinates, lens read-outs from `lens_top_ids`,
`lens_top_probs` and `token_string`.

Example:
    >>> info = write_dashboard("out/demo/attention.zarr", "out/demo/dashboard")   # doctest: +SKIP
    >>> info["path"]                                                              # doctest: +SKIP
    'out/demo/dashboard/index.html'
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..store import open_store
from ..store.positions import top_k_sources

KINDS = ("prompt", "number", "bot", "latent", "eot", "eos", "")
"""Kind codes of the page data (latent1..K all map to `latent`; the token text says which)."""

SCALE = 10_000
"""Weights and probabilities are stored as integers in units of 1/SCALE."""

MISSING = {
    "attention": "no attention in this store (capture with --what attention)",
    "lens": "no lens read-outs in this store (capture with --what lens)",
    "tokens": "no token strings in this store (it was captured before source_token/source_kind "
              "coordinates existed): the question is shown as text",
    "tokens_no_positions": "no token strings in this store: it holds no per-position variable, so no position "
                           "axis to label (capture with --what prompt_ids, or attention): the question is shown "
                           "as text",
    "answers": "no answers in this store (capture with --what answer_pred,answer_gold,correct)",
}


class _Strings:
    """An append-only string table: `index(s)` → position of `s` in `table`."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, s: str) -> int:
        i = self._index.get(s)
        if i is None:
            i = self._index[s] = len(self.table)
            self.table.append(s)
        return i


def _text(arr: Any) -> np.ndarray:
    return np.array(np.asarray(arr).tolist(), dtype=object)


def _is_number(text: str) -> bool:
    t = str(text).strip().replace(",", "")
    return bool(t) and t.lstrip("-").replace(".", "", 1).isdigit()


def number_rate_by_layer(ds: xr.Dataset) -> np.ndarray | None:
    """Per layer: the share of (example, latent step) whose logit-lens top-1 token is a number (None
    without lens read-outs and the vocabulary).
    """
    if "lens_top_ids" not in ds or "token_string" not in ds.variables:
        return None
    vocab = _text(ds["token_string"].values)
    numeric = np.array([_is_number(t) for t in vocab])
    names = [str(s) for s in ds["step_name"].values] if "step_name" in ds.coords else []
    latents = [i for i, n in enumerate(names) if n.startswith("latent")] or list(range(ds.sizes["step"]))
    top1 = np.asarray(ds["lens_top_ids"].transpose("example", "step", "layer", "k").values)[:, latents, :, 0]
    valid = (top1 >= 0) & (top1 < len(vocab))
    hit = np.where(valid, numeric[np.clip(top1, 0, len(vocab) - 1)], False)
    return hit.sum((0, 1)) / np.maximum(valid.sum((0, 1)), 1)


def best_layer(ds: xr.Dataset) -> int | None:
    """The default logit-lens layer: where the latent steps' read-outs are most informative, by the
    stated rule "the layer whose top-1 token at the latent steps is a number most often" (the values
    a latent may hold; the earliest such layer on a tie). Without any number read-out (or without the
    vocabulary) it falls back to the highest mean top-1 probability. None without lens read-outs.
    """
    if "lens_top_probs" not in ds:
        return None
    rate = number_rate_by_layer(ds)
    if rate is not None and rate.max() > 0:
        return int(ds["layer"].values[int(np.argmax(rate))])
    top1 = ds["lens_top_probs"].isel(k=0).mean(("example", "step"), skipna=True).values
    if not np.isfinite(top1).any():
        return int(ds["layer"].values[-1])
    return int(ds["layer"].values[int(np.nanargmax(top1))])


def page_data(ds: xr.Dataset, top_k: int = 8, layer: int | None = None, title: str | None = None,
              progress: bool = False) -> dict[str, Any]:
    """The JSON object the page renders (see the module docstring for the layout)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    n = int(ds.sizes["example"])
    steps = [str(s) for s in ds["step_name"].values] if "step_name" in ds.coords else []
    has_attention = "attention" in ds
    has_lens = "lens_top_ids" in ds and "lens_top_probs" in ds
    has_tokens = "source_token" in ds.coords and "source_kind" in ds.coords
    has_answers = all(v in ds for v in ("answer_pred", "answer_gold", "correct"))
    has_steps = "step_text" in ds
    missing = [key for key, ok in (("attention", has_attention), ("lens", has_lens), ("tokens", has_tokens),
                                   ("answers", has_answers)) if not ok]
    layers = [int(x) for x in ds["layer"].values] if has_lens else []
    if layer is not None and has_lens and layer not in layers:
        raise ValueError(f"layer {layer} has no lens read-outs in this store; its layers are {layers}")
    chosen = layer if layer is not None else best_layer(ds)

    strings = _Strings()
    strings.index("")
    ids = _text(ds["example"].values)
    questions = _text(ds["question"].values) if "question" in ds.coords else ids
    tokens = _text(ds["source_token"].values) if has_tokens else None
    kinds = _text(ds["source_kind"].values) if has_tokens else None
    if has_attention:
        att = np.asarray(ds["attention"].values, dtype=np.float64)
        order, weights = top_k_sources(att, top_k)
    if has_lens:
        lens_ids = np.asarray(ds["lens_top_ids"].values)[..., :5]
        lens_probs = np.asarray(ds["lens_top_probs"].values, dtype=np.float64)[..., :5]
        vocab = _text(ds["token_string"].values) if "token_string" in ds.variables else None
        lens_strings: dict[int, int] = {}

        def lens_token(i: int) -> int:
            if i not in lens_strings:
                text = str(vocab[i]) if vocab is not None and 0 <= i < len(vocab) else f"#{i}"
                lens_strings[i] = strings.index(text)
            return lens_strings[i]
    if has_steps:
        step_texts = _text(ds["step_text"].values)
    if has_answers:
        pred = np.asarray(ds["answer_pred"].values, dtype=np.float64)
        gold = np.asarray(ds["answer_gold"].values, dtype=np.float64)
        correct = np.asarray(ds["correct"].values, dtype=bool)

    examples = []
    for i in tqdm(range(n), desc="dashboard", unit="ex", disable=not progress):
        ex: dict[str, Any] = {"id": str(ids[i]), "q": str(questions[i])}
        if tokens is not None and kinds is not None:  # = has_tokens
            row = [str(t) for t in tokens[i]]
            width = len(row)
            while width and str(kinds[i][width - 1]) == "":
                width -= 1
            ex["t"] = [strings.index(t) for t in row[:width]]
            ex["k"] = [KINDS.index("latent") if str(k).startswith("latent") else KINDS.index(str(k))
                       if str(k) in KINDS else 0 for k in kinds[i][:width]]
        if has_answers:
            ex["g"] = _number(gold[i])
            ex["p"] = _number(pred[i])
            ex["c"] = int(correct[i])
        if has_attention:
            per_step = []
            for s in range(att.shape[1]):
                ok = np.isfinite(weights[i, s])
                per_step.append([order[i, s][ok].tolist(), np.rint(weights[i, s][ok] * SCALE).astype(int).tolist()])
            ex["a"] = per_step
        if has_lens:
            ex["l"] = [[[[lens_token(int(t)) for t in lens_ids[i, s, li] if t >= 0],
                         np.rint(np.nan_to_num(lens_probs[i, s, li][lens_ids[i, s, li] >= 0]) * SCALE).astype(int).tolist()]
                        for li in range(lens_ids.shape[2])] for s in range(lens_ids.shape[1])]
        if has_steps:  # the SIM-CoT step decoder's text of each step (string-table indices; 0 = "")
            ex["d"] = [strings.index(str(t)) for t in step_texts[i]]
        examples.append(ex)
    attrs = ds.attrs
    return {
        "title": title or f"CODI latent dashboard: {attrs.get('model_id') or 'model'}",
        "model": attrs.get("model_id"), "dataset": (attrs.get("config") or {}).get("dataset"),
        "store": attrs.get("store_path"), "steps": steps, "layers": layers, "layer": chosen,
        "top_k": top_k, "scale": SCALE, "kinds": list(KINDS),
        "missing": [MISSING["tokens_no_positions" if m == "tokens" and "position" not in ds.dims else m]
                    for m in missing], "missing_keys": missing,
        "strings": strings.table, "examples": examples,
    }


def _number(x: float) -> float | int | None:
    if not np.isfinite(x):
        return None
    return int(x) if float(x).is_integer() else float(x)


def render_page(data: dict[str, Any]) -> str:
    """The self-contained HTML page for `data` (assets inlined; `</` escaped inside scripts)."""
    assets = resources.files("nnsight_codi.dashboard") / "assets"
    page = (assets / "page.html").read_text(encoding="utf-8")
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    replacements = {
        "{{TITLE}}": html.escape(data["title"]),
        "{{CSS}}": (assets / "dashboard.css").read_text(encoding="utf-8"),
        "{{DATA}}": _script_safe(payload),
        "{{JS}}": _script_safe((assets / "dashboard.js").read_text(encoding="utf-8")),
    }
    # one pass, so a question that happens to contain "{{JS}}" is never substituted
    return re.sub(r"\{\{(TITLE|CSS|DATA|JS)\}\}", lambda m: replacements[m.group(0)], page)


def _script_safe(text: str) -> str:
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def write_dashboard(store: str | Path | xr.Dataset, out: str | Path, top_k: int = 8, layer: int | None = None,
                    limit: int | None = None, title: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Write `out/index.html` from a store; return `{path, bytes, examples, missing, layer}`."""
    ds = store if isinstance(store, xr.Dataset) else open_store(store)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        ds = ds.isel(example=slice(0, limit))
    data = page_data(ds, top_k=top_k, layer=layer, title=title, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    text = render_page(data)
    path.write_text(text, encoding="utf-8")
    return {"path": str(path), "bytes": len(text.encode("utf-8")), "examples": len(data["examples"]),
            "missing": data["missing"], "layer": data["layer"]}
