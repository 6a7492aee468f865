"""The loopback NDIF of the live suite (`serve.py`): started once per test session, stopped at its end.

Opt-in: the live tests run with `NNSIGHT_CODI_NDIF_LIVE=1` (CI sets it; they take minutes and a 5 GB
server environment); without it they are skipped. A server already up (`serve.py up`) is reused and
left running; one this fixture started is stopped by PID when the session ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NNSIGHT_CODI_NDIF_LIVE") == "1":
        return
    skip = pytest.mark.skip(reason="live NDIF suite: set NNSIGHT_CODI_NDIF_LIVE=1 (starts a loopback ndif 0.1.2)")
    for item in items:
        if "ndif_live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ndif_server():
    """`serve.up()`'s state: `api` (the URL to pass as `remote`), `models`, `lora`; the client set up for it."""
    import serve
    from nnsight.modeling import huggingface

    before = serve.load_state() or {}
    state = serve.up()
    started_here = state["token"] != before.get("token")
    previous_key = os.environ.get("NDIF_API_KEY")
    os.environ["NDIF_API_KEY"] = state["api_key"]
    # nnsight names a hosted model by its Hub-canonical id; a loopback server serves local directories,
    # which are their own ids (the client has no network to ask the Hub)
    for path in state["models"].values():
        huggingface._ID_CACHE[path] = path
    try:
        yield state
    finally:
        if previous_key is None:
            os.environ.pop("NDIF_API_KEY", None)
        else:
            os.environ["NDIF_API_KEY"] = previous_key
        if started_here and os.environ.get("NNSIGHT_CODI_NDIF_KEEP") != "1":
            serve.down()
