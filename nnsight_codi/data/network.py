"""Whether the Hugging Face Hub can be reached, decided in about a second (never a retry loop).

`offline_reason()` is None when the Hub looks reachable, else one short reason: `HF_HUB_OFFLINE`
or `HF_DATASETS_OFFLINE` set, or no TCP connection to the Hub's host within `timeout` seconds.
Callers fall back to shipped data or fail fast with a clear message instead of waiting on the
hub client's retries (about 40 s without network).

Example:
    >>> offline_reason(env={"HF_HUB_OFFLINE": "1"})
    'HF_HUB_OFFLINE=1 is set'
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from urllib.parse import urlparse

_TRUE = {"1", "true", "yes", "on"}
_cached: dict[str, str | None] = {}


def hub_endpoint(env: Mapping[str, str] | None = None) -> str:
    """The Hub's base URL (`HF_ENDPOINT`, else https://huggingface.co)."""
    return (os.environ if env is None else env).get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_reason(timeout: float = 1.5, cache: bool = True, env: Mapping[str, str] | None = None) -> str | None:
    """None when the Hub is reachable; else why not, in a few words (see module doc). `env` defaults to
    the process environment.
    """
    env = os.environ if env is None else env
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if env.get(var, "").strip().lower() in _TRUE:
            return f"{var}={env[var]} is set"
    endpoint = hub_endpoint(env)
    if cache and endpoint in _cached:
        return _cached[endpoint]
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        reason = None
    except OSError as err:
        reason = f"{host}:{port} is unreachable ({type(err).__name__}: {err})" if str(err) else \
            f"{host}:{port} is unreachable ({type(err).__name__})"
    _cached[endpoint] = reason
    return reason
