"""Local, serialised and hosted (NDIF) execution: what `remote` means and what a remote request carries.

`remote` is `None` (local), `"local"` (the request is serialised and run as NDIF would, no
server needed: what the tests use), `True` (NDIF at `NDIF_HOST` / the nnsight config host) or a
host URL. Real NDIF runs only models it hosts, named by hub id (`nnsight_codi.loading.load_instruct_model`
builds a stock `TransformersModel` for one without downloading the weights; a `CodiModel` names its
hosted repo with `ndif_repo_id`).

Here: validating `remote` (`check_remote`, `remote_value` for the CLI's `--remote`), shipping this
package's code by value (`register_package`, `remote_kwargs`), modules a request carries by value
(`by_value`, `PortableProjection`), NDIF failures that say what to do (`ndif_errors`, `NdifError`) and
the size of every serialised request (`count_requests`).

Example:
    >>> check_remote(None), check_remote("local"), remote_value("ndif")
    (None, 'local', True)
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

import nnsight_codi


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

    nnsight.register(nnsight_codi)


def remote_kwargs(remote: Any) -> dict:
    """Trace kwargs for `remote`: `{"remote": remote}` (this package registered to ship by value), or `{}`."""
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


_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Timeout))\b\s*:?")
_UNREACHABLE_TYPES = ("ConnectError", "ConnectTimeout", "ConnectionError", "ConnectionRefusedError",
                      "WebSocketException", "WebSocketConnectionClosedException", "ConnectionClosed",
                      "gaierror", "NetworkError", "ProxyError")
_EXECUTION_TYPES = ("AttributeError", "TypeError", "RuntimeError", "KeyError", "IndexError", "ValueError",
                    "NameError", "AssertionError", "NotImplementedError", "ZeroDivisionError")


def exception_line(text: str) -> tuple[str | None, str]:
    r"""The server's exception: `(its type, the last non-empty line of the text, whole)`.

    NDIF's execution errors carry the server's traceback; the exception itself is its last line.

    >>> exception_line('Traceback (most recent call last):\n  File "/x/versions/3.12/y.py", line 3\n'
    ...                "AttributeError: 'Out' object has no attribute 'cache'")
    ('AttributeError', "AttributeError: 'Out' object has no attribute 'cache'")
    >>> exception_line("Could not deploy this model. No GPU nodes available.")
    (None, 'Could not deploy this model. No GPU nodes available.')
    """
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    match = _EXCEPTION_LINE.match(last)
    return (match.group(1) if match else None), last


def _advice(client_type: str, server_type: str | None, last: str, model_id: str) -> str:
    """What to do, chosen from the exception types and the exception line (never the traceback's text)."""
    low = last.lower()
    if client_type in _UNREACHABLE_TYPES or (client_type == "OSError" and "connect" in low):
        return f"cannot reach NDIF at the configured host: {REMOTE_HINT}"
    if "repo id must be in the form" in low or "repo_name" in low and "namespace/repo_name" in low:
        return ("the hosted model must be named by a Hub id (org/name): a local --ndif-model directory works "
                "only with a self-hosted NDIF that serves that very path and a client that knows it (docs/ndif-self-host.md)")
    if "payload could not be read" in low or (server_type == "AttributeError" and "can't get attribute" in low):
        return ("the server could not load the request: its Python or nnsight differs from yours in a way the "
                "request depends on (`nnsight-codi remote-check` compares them and sends one request of each kind)")
    if server_type in ("ImportError", "ModuleNotFoundError"):
        if "whitelist" in low or "not allowed" in low:
            return ("NDIF's sandbox refused code in the request (a module or builtin outside its whitelist): "
                    "`nnsight-codi remote-check --model …` audits the request; report it with that output")
        return "the server lacks a module the request imports: report it with `nnsight-codi remote-check` output"
    if server_type in ("TimeoutError", "ConnectTimeout") or client_type in ("TimeoutError", "ReadTimeout") \
            or "timed out" in low or "execution timeout" in low:
        return ("the NDIF request timed out: use smaller batches (--batch-size) or fewer new tokens; "
                "grids resume where they stopped when rerun")
    if "no module at" in low or "architecture on this server" in low:
        return ("the server's model has another module tree than yours: install the server's transformers "
                "version (`nnsight.ndif` compares environments)")
    if server_type in _EXECUTION_TYPES:
        return ("the request failed while running on the server: rerun with --remote local to reproduce it here; "
                "if it passes, the server's transformers or nnsight behave differently from yours "
                "(`nnsight-codi remote-check` compares versions and sends one request of each kind)")
    if "too large" in low or re.search(r"\b413\b", low):
        return ("the request is too large for the server: use a smaller --batch-size (a LoRA adapter travels "
                "once per batch) or a bfloat16 host")
    if "could not deploy" in low or "error starting model" in low or "no gpu nodes" in low:
        return ("the server could not start the model (a self-hosted NDIF needs a GPU node, a checkpoint "
                "its transformers loads, and an nnsight its controller was written for): see the server's "
                "log, docs/ndif-self-host.md")
    if any(w in low for w in ("not dedicated", "hotswap", "not found", "not hosted", "no model", "not served")):
        return (f"NDIF does not host {model_id or 'this model'} for your key: pick a hosted model "
                "(nnsight.status() lists them) or run locally")
    if "api key" in low or re.search(r"\b40[13]\b", low) or "unauthori" in low:
        return "NDIF rejected the API key: set NDIF_API_KEY (or `nnsight login`) to a valid key"
    if re.search(r"\bversions?\b.*\b(below|above|minimum|maximum|not supported|unsupported|mismatch)", low) \
            or re.search(r"\b(minimum|unsupported|incompatible)\b.*\bversion\b", low):
        return ("the nnsight client and the NDIF server disagree on versions: install the nnsight "
                "version the server names (pip install -U 'nnsight==X'; `nnsight-codi remote-check` shows both)")
    if "connect" in low or "resolve" in low or "network" in low:
        return f"cannot reach NDIF at the configured host: {REMOTE_HINT}"
    return REMOTE_HINT


def ndif_error(err: BaseException, model_id: str = "", limit: int = 400) -> NdifError:
    """An `NdifError` for a failed NDIF request: what happened and what to do, one line.

    The server's exception line (the last line of its traceback) is kept whole; only what comes
    before it is shortened to `limit` characters. The advice follows the exception's type and line.
    """
    client_type = type(err).__name__
    server_type, last = exception_line(str(err))
    flat = " ".join(str(err).split())
    last_flat = " ".join(last.split())
    if len(flat) > limit and last_flat:
        before = flat[: max(0, len(flat) - len(last_flat))].rstrip()
        before = before[: max(0, limit - len(last_flat))].rstrip()
        flat = (before + " … " if before else "") + last_flat
    return NdifError(f"NDIF run failed ({client_type}: {flat}); {_advice(client_type, server_type, last, model_id)}")


def remote_value(arg: str | None) -> bool | str | None:
    """The CLI's `--remote` (`local`, `ndif`, a URL) as a `remote` value (None when not given)."""
    if arg is None:
        return None
    if arg == "local":
        return "local"
    if arg in ("ndif", "true", "True"):
        return True
    if arg.startswith("http"):
        return arg
    raise ValueError(f"--remote must be 'local', 'ndif' or an http(s) host, got {arg!r}")


# -- modules a request carries by value ------------------------------------------------------

def by_value(module: nn.Module, share: bool = True) -> nn.Module:
    """A copy of `module` that a remote request carries by value.

    nnsight tags a module wrapped as an envoy child (`CodiModel.prj` → "Module:model.prj") to be sent
    as a *reference* to the server's model, which has no such module, and replaces its `forward` by a
    controller; the copy drops both.
    """
    # share=True keeps the very tensors (same numerics here; never `.to()` such a copy in place)
    shared = {id(t): t for t in [*module.parameters(), *module.buffers()]} if share else {}
    copied = copy.deepcopy(module, memo=shared)
    for sub in copied.modules():
        sub.__dict__.pop("_persistent_id", None)
        if "forward" in sub.__dict__:  # nnsight's per-instance controller: back to the class's forward
            del sub.__dict__["forward"]
    return copied


class PortableProjection(nn.Module):
    """The latent projection, moved to the hidden state's device/dtype on first use (on the server)."""

    def __init__(self, prj: nn.Module) -> None:
        super(PortableProjection, self).__init__()  # shipped by value: no bare super()
        self.inner = prj

    def forward(self, hidden: Tensor) -> Tensor:
        """`Float[Tensor, "batch 1 dim"]` → the next latent input, same shape."""
        ref = next(self.inner.parameters())
        if ref.device != hidden.device or ref.dtype != hidden.dtype:
            self.inner.to(device=hidden.device, dtype=hidden.dtype)
        return self.inner(hidden)


# -- what a remote run sends ---------------------------------------------------------------------

@dataclass
class RequestLog:
    """Requests a remote run made (`remote="local"` serialises exactly what NDIF would receive)."""

    raw_bytes: list[int] = field(default_factory=list)
    compressed_bytes: list[int] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.raw_bytes)


def count_requests(with_zstd: bool = False, keep: bool = False):
    """Context manager recording the size of every serialised request (`RequestModel.serialize`).

    With `with_zstd=True` it also records the zstd size NDIF's client sends (`CONFIG.API.COMPRESS`);
    with `keep=True` it keeps the serialised requests themselves (`log.blobs`).

    Example:
        >>> with count_requests() as log:                                   # doctest: +SKIP
        ...     run_loop(codi, prompts, remote="local")
        >>> log.requests, log.raw_bytes                                     # doctest: +SKIP
    """
    from nnsight.schema.request import RequestModel

    @contextmanager
    def recording():
        log = RequestLog()
        original = RequestModel.__dict__["serialize"]

        def serialize(cls, tracer, compress: bool = False):
            blob = original.__func__(cls, tracer, compress)
            log.raw_bytes.append(len(blob))
            if keep:
                log.blobs.append(blob)
            if with_zstd:
                import zstandard as zstd

                log.compressed_bytes.append(len(blob) if compress else len(zstd.ZstdCompressor(level=6).compress(blob)))
            return blob

        RequestModel.serialize = classmethod(serialize)  # pyright: ignore[reportAttributeAccessIssue]  (patched while counting; restored below)
        try:
            yield log
        finally:
            RequestModel.serialize = original

    return recording()

