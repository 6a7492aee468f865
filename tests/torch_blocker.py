"""Run Python code in a subprocess where `torch` and `nnsight` cannot be imported (a meta-path finder
raises ImportError for them), to show that code reads stores offline without either."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = '''
import importlib.abc, sys


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "nnsight"):
            raise ImportError(f"{name} is blocked: this code must run without torch and nnsight")
        return None


sys.meta_path.insert(0, _Blocked())
'''


def run_blocked(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`code` after the blocker, from the checkout root (so `analyses` imports), with matplotlib on Agg."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
