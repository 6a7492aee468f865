"""Attention across latents on the tiny CODI, and the latent dashboard.

    python runs/attention_study.py --out out/attention [--examples 1000] [--attention-detail head]

Captures synthetic problems with `attention` (each step's query row averaged over all layers and
heads), `hidden` and the answers; reads the compute/store alternation with `analyses.attention`
(number focus, previous-latent and operand mass per latent with bootstrap CIs, odd vs even);
writes the dashboard to `OUT/dashboard/index.html` and, where Chromium is installed, measures its
time to first render and takes a screenshot (`OUT/dashboard/screenshot.png`).

Logit-lens read-outs for the dashboard (`lens_top_ids`, `lens_top_probs`, `lens_entropy`,
`token_string`) are recorded by the same capture (`--what ...,lens`). Rerunning reuses the
finished store.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nnsight_codi.studies import study_main  # noqa: E402


@dataclass
class Config:
    """Attention study on the tiny CODI."""

    model: str = field(default="tiny", metadata={"help": "CODI model ('tiny', a converted dir, a hub id)"})
    examples: int = field(default=1000, metadata={"help": "synthetic problems captured"})
    seed: int = field(default=1, metadata={"help": "seed of the synthetic problems"})
    batch_size: int = 64
    attention_detail: str | None = field(default="layer", metadata={
        "help": "also store attention per 'layer' (block; read out per block) or per 'head'"})
    top_k: int = field(default=8, metadata={"help": "attended sources shown per step in the dashboard"})
    lens_layer: int | None = field(default=None, metadata={
        "help": "the dashboard's initial logit-lens layer (default: highest mean top-1 probability)"})
    screenshot_layer: int = field(default=-1, metadata={"help": "lens layer shown in the screenshot (-1 = last)"})
    lens_k: int = field(default=5, metadata={"help": "logit-lens tokens kept per step and layer"})
    bootstrap_seed: int = 0
    measure_render: bool = field(default=True, metadata={"help": "time the dashboard's first render in Chromium"})
    device: str = "cpu"


def demo_config() -> Config:
    """Small enough for the demo (well under a minute on a laptop CPU)."""
    return Config(examples=200)


def capture_variables(config: Config) -> tuple[str, ...]:
    """The capture variables of the study (with per-layer or per-head attention if configured)."""
    names = ("hidden", "attention", "answer_pred", "answer_gold", "correct", "prompt_ids", "lens")
    if config.attention_detail is not None:
        names += ({"layer": "attention_layers", "head": "attention_heads"}[config.attention_detail],)
    return names


def measure_page(page: Path, example: str, step: int, shot: Path, layer: int | None = None) -> dict[str, Any]:
    """First render (ms, from navigation start) and a screenshot, where Chromium is installed."""
    from nnsight_codi.dashboard.browser import dump_dom, find_chromium, read_page, screenshot

    if find_chromium() is None:
        return {"chromium": None}
    start = time.perf_counter()
    dom, console = dump_dom(page, example=example, step=step)
    wall = time.perf_counter() - start
    state = read_page(dom)
    screenshot(page, shot, example=example, step=step, layer=layer)
    return {"chromium": find_chromium(), "first_render_ms": float(state["body"].get("data-first-render-ms", "nan")),
            "console_messages": len(console), "page_errors": state["errors"],
            "browser_wall_seconds": round(wall, 2), "screenshot": str(shot)}


def run(config: Config, out, progress: bool = True) -> dict:
    """Run the attention study into `out`: capture, analysis, dashboard, report; return the results."""
    from analyses import attention
    from nnsight_codi.activation_capture import CaptureConfig, run_capture
    from nnsight_codi.dashboard import write_dashboard
    from nnsight_codi.loading import load_model
    from nnsight_codi.reporting import write_study
    from nnsight_codi.store import open_store

    if config.attention_detail not in (None, "layer", "head"):
        raise ValueError(f"attention_detail must be 'layer', 'head' or None, got {config.attention_detail!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "attention.zarr"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    codi = load_model(config.model, device=config.device)
    capture = CaptureConfig(model=config.model, dataset="synthetic", seed=config.seed, limit=config.examples,
                            variables=capture_variables(config), lens_k=config.lens_k, batch_size=config.batch_size,
                            device=config.device)
    summary = run_capture(store, capture, codi=codi, progress=progress)
    timings["capture_s"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    result = attention.analyse(store, out, seed=config.bootstrap_seed)
    timings["analysis_s"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    ds = open_store(store)
    dash = write_dashboard(ds, out / "dashboard", top_k=config.top_k, layer=config.lens_layer,
                           title=f"CODI latent dashboard: {config.model} on synthetic problems")
    timings["dashboard_s"] = round(time.perf_counter() - t, 2)
    wrong = [str(e) for e, c in zip(ds["example"].values, ds["correct"].values) if not c]
    show = str(ds["example"].values[0])
    if config.measure_render:
        layers = [int(x) for x in ds["layer"].values]
        dash.update(measure_page(Path(dash["path"]), show, 1, out / "dashboard" / "screenshot.png",
                                 layer=layers[config.screenshot_layer]))
    result.update(config=dataclasses.asdict(config), store=str(store), capture=summary, dashboard=dash,
                  timings=timings, wrong_examples=wrong[:20])
    write_study(out, attention, result, model=codi)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line of the attention study; return the exit code."""
    return study_main(Config, run, "out/attention", __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
