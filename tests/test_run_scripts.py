"""The `runs/` helper scripts: bad input is one line on stderr and exit status 2, before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "runs" / script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.mark.parametrize("script, args, message", [
    ("pilot_tiny.py", ["x", "3", "3", '{"bogus": 1}'], "unknown key(s) ['bogus']"),
    ("pilot_tiny.py", ["x", "3", "3", "{bad"], "not valid JSON"),
    ("pilot_tiny.py", ["x", "3", "3", '{"lr": "fast"}'], "lr must be float"),
    ("sweep_tiny.py", ["{variants}"], "variant 'a': variant: unknown key(s) ['bogus']"),
    ("sweep_tiny.py", ["missing.json"], "missing.json"),
    ("trace_latents.py", ["--model", "/nonexistent-model"], "/nonexistent-model"),
    ("steering_study.py", ["--sites", "middle", "--out", "{tmp}/s"], "unknown site set 'middle'"),
    ("steering_study.py", ["--layers", "0,9", "--out", "{tmp}/s"], "layers [9] out of range 0..4"),
    ("steering_study.py", ["--pairs", "1-9", "--out", "{tmp}/s"], "latent(s) [9] out of range 1..6"),
    ("cot_vectors_models.py", ["v2=missing/results.json"], "cannot read missing/results.json"),
    ("cot_vectors_models.py", ["no-label"], "give LABEL=PATH"),
    ("cot_vectors_stop_early.py", ["--study", "missing", "--condition", "single:1:1"], "cannot read the study at missing"),
    ("instruct_probe.py", ["--model", "/nonexistent-model"], "/nonexistent-model"),
    ("instruct_probe.py", ["--n", "0"], "--n must be >= 1"),
])
def test_bad_input_is_one_line(script, args, message, tmp_path):
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"a": {"bogus": 1}}))
    args = [str(variants) if a == "{variants}" else a.replace("{tmp}", str(tmp_path)) for a in args]
    if script == "sweep_tiny.py":
        args += ["--out", str(tmp_path / "sweep")]
    done = _run(script, *args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "sweep").exists() and not (ROOT / "out" / "pilot-x").exists()
    assert not (tmp_path / "s" / "sweep" / "reference.zarr").exists()


def test_instruct_probe_counts_chains_as_the_model_writes_them(tmp_path):
    """The probe's rates are `score_outputs` of the model's own greedy outputs: a trained CoT phrasing
    writes chains, a trained direct one does not (the shipped tiny-instruct)."""
    out = tmp_path / "probe.md"
    done = _run("instruct_probe.py", "--n", "8", "--probe", "Show your work .", "--probe", "Do not show your work .",
                "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["instruction"] for r in rows] == ["Show your work .", "Do not show your work ."]
    assert rows[0]["chain_rate"] == 1.0 and rows[1]["chain_rate"] == 0.0 and all(r["n"] == 8 for r in rows)
    assert "| Show your work . | 100% |" in out.read_text()
