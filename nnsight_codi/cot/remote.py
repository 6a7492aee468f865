"""NDIF for the instruct-LM path: the same traces with `remote=True`, and failures that say what to do.

`remote` is `None` (local), `"local"` (the request is serialised and run as NDIF would, no
server needed: what the tests use), `True` (NDIF at `NDIF_HOST` / the nnsight config host) or a
host URL. Real NDIF runs only models it hosts, named by hub id, so `load_instruct_model(spec,
remote=True)` builds a stock `TransformersModel(spec)` without downloading the weights.

Example:
    >>> check_remote(None), check_remote("local")
    (None, 'local')
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

class NdifError(ConnectionError):
    """An NDIF run failed; the message says what to do (a `ConnectionError`, so the CLI prints one line)."""


REMOTE_HINT = ("check the model is hosted (nnsight.status() or https://nnsight.net/status), your key "
               "(NDIF_API_KEY or `nnsight login`) and host (NDIF_HOST)")


def is_ndif(remote: Any) -> bool:
    """True for a real remote run (`True` or a host URL), False for local and `"local"`."""
    return bool(remote) and remote != "local"


def check_remote(remote: Any) -> Any:
    """Validate `remote` before any work; a real NDIF run needs an API key."""
    if remote in (None, False, "local"):
        return None if remote is False else remote
    if remote is not True and not (isinstance(remote, str) and remote.startswith(("http://", "https://"))):
        raise ValueError(f"remote must be None, 'local', True or an http(s) host URL, got {remote!r}")
    from nnsight import CONFIG

    if not (os.environ.get("NDIF_API_KEY") or CONFIG.API.APIKEY):
        raise ValueError("NDIF needs an API key: set NDIF_API_KEY (or run `nnsight login`); get one at "
                         "https://login.ndif.us")
    return remote


def register_package() -> None:
    """Ship this package's hook code by value (it is not installed on the server)."""
    import nnsight

    import nnsight_codi

    nnsight.register(nnsight_codi)


def remote_kwargs(remote: Any) -> dict:
    if remote:
        register_package()
        return {"remote": remote}
    return {}


@contextmanager
def ndif_errors(remote: Any, model_id: str = "") -> Iterator[None]:
    """Turn NDIF failures into `NdifError`s that say what to do (local runs pass through)."""
    if not is_ndif(remote):
        yield
        return
    try:
        yield
    except Exception as err:  # the client raises RemoteError, httpx / websocket errors, ValueError
        raise ndif_error(err, model_id) from err


def ndif_error(err: BaseException, model_id: str = "") -> NdifError:
    """An `NdifError` for a failed NDIF request: what happened and what to do, one line."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    low = text.lower()
    if "not whitelisted" in low or "is not allowed" in low:
        advice = ("NDIF's sandbox refused code in the request (a module or builtin outside its whitelist): "
                  "`nnsight-codi remote-check --model …` audits the request; report it with that output")
    elif "no module at" in low or "architecture on this server" in low:
        advice = ("the server's model has another module tree than yours: install the server's transformers "
                  "version (`nnsight.ndif` compares environments)")
    elif "too large" in low or re.search(r"\b413\b", low):
        advice = ("the request is too large for the server: use a smaller --batch-size (a LoRA adapter travels "
                  "once per batch) or a bfloat16 host")
    elif "could not deploy" in low or "error starting model" in low or "no gpu nodes" in low:
        advice = ("the server could not start the model (a self-hosted NDIF needs a GPU node, a checkpoint "
                  "its transformers loads, and an nnsight its controller was written for): see the server's "
                  "log, docs/ndif-self-host.md")
    elif "not dedicated" in low or "hotswap" in low or "not found" in low or "not hosted" in low \
            or "no model" in low or "not served" in low:
        advice = (f"NDIF does not host {model_id or 'this model'} for your key: pick a hosted model "
                  "(nnsight.status() lists them) or run locally")
    elif "api key" in low or re.search(r"\b40[13]\b", low) or "unauthori" in low:
        advice = "NDIF rejected the API key: set NDIF_API_KEY (or `nnsight login`) to a valid key"
    elif "version" in low or "payload could not be read" in low:
        advice = ("the nnsight client and the NDIF server disagree on versions: install the nnsight "
                  "version the server names (pip install -U 'nnsight==X'; `nnsight-codi remote-check` shows both)")
    elif "timeout" in low or "timed out" in low:
        advice = ("the NDIF request timed out: use smaller batches (--batch-size) or fewer new tokens; "
                  "grids resume where they stopped when rerun")
    elif "connect" in low or "resolve" in low or "network" in low:
        advice = f"cannot reach NDIF at the configured host: {REMOTE_HINT}"
    else:
        advice = REMOTE_HINT
    return NdifError(f"NDIF run failed ({text[:400]}); {advice}")


def load_instruct_model(spec: str, device: str = "cpu", dtype: str = "float32", remote: Any = None):
    """A plain HF causal LM as `TransformersModel`: local weights, or (NDIF) a stock wrapper by hub id."""
    if is_ndif(remote):
        from nnsight import TransformersModel

        with ndif_errors(remote, spec):
            return TransformersModel(str(spec), task="text-generation")
    from ..loading import load_model
    from ..tracing.codi_model import CodiModel

    model = load_model(spec, device=device, dtype=dtype)
    if isinstance(model, CodiModel):
        raise ValueError(f"{spec} is a CODI model; CoT vectors are for plain instruct LMs")
    return model
