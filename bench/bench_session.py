"""The NDIF-shaped session: its cost against the traced driver, and what a remote run sends.

    python bench/bench_session.py [--sizes tiny,gpt2] [--repeats 5] [--quick] [--json PATH]

Per model and batch (tiny CODI at 64, a CODI-GPT-2-sized model at 8; K = 6, ≤ 16 answer tokens),
timed round-robin with per-round ratios to `traced` (`with codi.latent_generate(...)`), for an
evaluation (no hooks) and a capture (`Capture(hidden of all layers, latent_input)`):
`session` (one trace per LM call, local) and `session remote="local"` (the request serialised and
deserialised exactly as for NDIF, then run here).

Requests and bytes: with `remote="local"` every request nnsight would send is serialised here
(`RequestModel.serialize`, counted by wrapping it); its size is reported raw and zstd-compressed
(level 6, what the remote backend uses when compressing). The response is what the session saves
(answer ids + the sink's records), measured as `torch.save` bytes. Per example = per batch / batch.
Writes bench/results/bench_session.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build, environment, round_robin  # noqa: E402

BATCH = {"tiny": 64, "gpt2": 8}


class RequestCounter:
    """Counts and sizes the payloads nnsight serialises for remote execution."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.compressed: list[int] = []

    def __enter__(self) -> RequestCounter:
        from nnsight.schema.request import RequestModel

        self._orig = RequestModel.serialize.__func__
        counter = self

        def serialize(cls, tracer, compress=False):
            blob = counter._orig(cls, tracer, compress)
            counter.sizes.append(len(blob))
            try:
                import zstandard

                counter.compressed.append(len(zstandard.ZstdCompressor(level=6).compress(blob)))
            except ImportError:
                pass
            return blob

        RequestModel.serialize = classmethod(serialize)
        return self

    def __exit__(self, *exc) -> None:
        from nnsight.schema.request import RequestModel

        RequestModel.serialize = classmethod(self._orig)


def saved_bytes(tokens, records) -> int:
    buf = io.BytesIO()
    torch.save({"tokens": tokens, "records": records}, buf)
    return buf.tell()


def bench_model(size: str, repeats: int, max_new_tokens: int) -> dict:
    from nnsight_codi.data.eval_datasets import load_eval_dataset, synthetic_options
    from nnsight_codi.tracing.capture_hook import Capture
    from nnsight_codi.tracing.loop import run_loop
    from nnsight_codi.tracing.session import plain_lm_model, run_latent_session

    codi = build(size)
    batch = BATCH[size]
    questions = list(load_eval_dataset("synthetic", limit=batch, seed=3, **synthetic_options(codi, None))["question"])
    prompts = codi.encode(questions)
    hook = Capture(["hidden", "latent_input"], range(codi.num_layers + 1), codi.num_latents)
    m = max_new_tokens
    lm = plain_lm_model(codi)
    out = {"model": size, "batch": batch, "layers": codi.num_layers, "dim": codi.hidden_size}
    with torch.inference_mode():
        for task, hooks in (("eval", []), ("capture", [hook])):
            def traced(hooks=hooks):
                if hooks:
                    return run_loop(codi, prompts, hooks, max_new_tokens=m)
                with codi.latent_generate(prompts, max_new_tokens=m) as tracer:
                    tokens = tracer.result.save()
                return tokens

            def session(hooks=hooks, remote=None):
                if hooks:
                    return run_loop(codi, prompts, hooks, max_new_tokens=m, remote=remote)
                return run_latent_session(lm, codi.prj._module, codi.codi_config, prompts, max_new_tokens=m,
                                          remote=remote)

            rows = round_robin({
                "traced": traced,
                "session": session,
                "session remote=local": lambda: session(remote="local"),
            }, repeats, baseline="traced")
            with RequestCounter() as counter:
                tokens, records = run_loop(codi, prompts, hooks, max_new_tokens=m, remote="local")
            response = saved_bytes(tokens, records)
            out[task] = {
                "variants": rows, "lm_calls": codi.num_latents + 1 + tokens.shape[1],
                "requests_per_batch": len(counter.sizes), "requests_per_example": len(counter.sizes) / batch,
                "request_bytes_per_batch": sum(counter.sizes),
                "request_bytes_per_example": sum(counter.sizes) / batch,
                "request_zstd_bytes_per_example": sum(counter.compressed) / batch if counter.compressed else None,
                "response_bytes_per_example": response / batch,
            }
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny,gpt2")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="tiny only, 2 rounds")
    ap.add_argument("--json", default=str(RESULTS / "bench_session.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = "tiny", 2
    results = [bench_model(s, args.repeats if s == "tiny" else max(2, args.repeats // 2), args.max_new_tokens)
               for s in args.sizes.split(",") if s]
    info = {"env": environment(), "results": results}
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=1) + "\n")
    for r in results:
        for task in ("eval", "capture"):
            t = r[task]
            cells = ", ".join(f"{k} ×{v['ratio']:.2f}" for k, v in t["variants"].items())
            print(f"{r['model']} b{r['batch']} {task}: {cells}; {t['requests_per_example']:.3f} requests/example, "
                  f"{t['request_bytes_per_example']:,.0f} B/example sent, {t['response_bytes_per_example']:,.0f} B back")
    return info


if __name__ == "__main__":
    main()
