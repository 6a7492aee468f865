"""The README's tracing example runs as written, warning-free: in a fresh interpreter with every Python
warning an error, and nothing on stderr that warns (transformers logs its deprecations there)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The first Python block of the README."""
    return re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S).group(1)


def test_the_readme_example_shows_what_it_should():
    code = readme_example()
    assert "codi.output.cache" in code and "past_key_values" not in code
    assert 'device="cpu"' in code and "tracer.iter" in code and "codi.step_input.output" in code


def test_the_readme_tracing_example_runs_without_a_warning(tmp_path):
    script = tmp_path / "readme_example.py"
    script.write_text(readme_example())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": ""}
    done = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.fullmatch(r"\['The answer is : \d+'\] 8\n", done.stdout), done.stdout
    # stderr holds transformers' weight-loading progress bar and nothing else
    noise = [line for line in re.split(r"[\r\n]", done.stderr) if line.strip() and not line.startswith("Loading weights")]
    assert not noise, noise
