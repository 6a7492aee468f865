r"""`nnsight-codi remote-check`: before a long remote run, check the NDIF server, the model and the request.

Checks, each printed as `ok`/`FAIL` with what to do:

1. **server**: `GET /ping` on the host (`--remote URL`, else `NDIF_HOST`, else nnsight's configured host);
2. **versions**: the server's nnsight (`GET /env`) against this client's — nnsight 0.8 requests are
   only read by a server of the same minor version;
3. **model**: the hosted repo (`--ndif-model`, the base of a `--lora-mode interventions` checkpoint, or
   `--model` itself for a plain LM) is deployed and running (`GET /status`);
4. **request audit**: one eval and one capture request of the model, serialised as NDIF receives
   them (`remote="local"`, one question), against NDIF's sandbox whitelist (`tracing/request_audit.py`);
5. **probes** (with `--remote`): one real one-question request of each kind the planned command uses
   (`--command`), sent to the server and compared with the same run made here: a request the server
   cannot read or run fails here, with the server's exception and the two environments' Python,
   nnsight and transformers versions (`GET /env`) named.

Without `--remote` only the audit runs. Exit status 0 when everything passes, 1 otherwise (the
failures on stderr, one line).

Example:
    $ nnsight-codi remote-check --model tiny
    $ NDIF_HOST=http://127.0.0.1:8001 nnsight-codi remote-check --model zen-E/CODI-gpt2 \
        --lora-mode interventions --remote ndif
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..tracing.request_audit import audit_request
from .common import add_model_args, emit_json, remote_value

DEPLOYED_LEVELS = ("HOT", "WARM")
PROBE_KINDS = ("eval", "capture", "attention", "steer-hidden", "steer-kv", "sweep")
COMMAND_PROBES: dict[str, tuple[str, ...]] = {
    "eval": ("eval",), "capture": ("eval", "capture", "attention"), "steer": ("eval", "steer-hidden", "steer-kv"),
    "sweep": ("eval", "sweep", "steer-kv"), "all": PROBE_KINDS,
}


@dataclass
class Check:
    """One preflight check: its name, whether it passed, what was found and what to do if not."""
    name: str
    ok: bool
    detail: str
    advice: str = ""

    def line(self) -> str:
        text = f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"
        return text + (f" — {self.advice}" if self.advice and not self.ok else "")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `remote-check` subcommand and its flags; return its parser."""
    p = subparsers.add_parser("remote-check", help="preflight a remote (NDIF) run: server, versions, model, request",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--remote", default=None, help="'ndif' (NDIF_HOST / nnsight's host) or an http(s) host URL; "
                                                 "omitted: only the request audit")
    p.add_argument("--ndif-model", default=None, help="hub id of the merged CODI LM deployed on the server")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request (default: 10)")
    p.add_argument("--skip-audit", action="store_true", help="do not build and audit requests (no model load)")
    p.add_argument("--command", default="all", choices=sorted(COMMAND_PROBES),
                   help="the command you plan to run remotely: its request kinds are probed (default: all)")
    p.add_argument("--skip-probes", action="store_true", help="send no real request to the server")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)
    return p


def resolve_host(remote: Any) -> str:
    """The host a remote run would use: a URL given, else `NDIF_HOST`, else nnsight's configured host."""
    if isinstance(remote, str) and remote.startswith("http"):
        return remote.rstrip("/")
    host = os.environ.get("NDIF_HOST")
    if not host:
        from nnsight import CONFIG

        host = CONFIG.API.HOST
    return host.rstrip("/")


def _get(host: str, path: str, timeout: float) -> Any:
    import httpx

    response = httpx.get(f"{host}{path}", timeout=timeout)
    response.raise_for_status()
    try:
        return response.json()
    except ValueError:
        return response.text


def minor(version: str) -> tuple[int, ...]:
    """`"0.8.1"` → `(0, 8)`; the part of a version that must agree between client and server."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def server_checks(host: str, repo: str | None, timeout: float) -> list[Check]:
    """Ping, versions and the deployed model on `host` (stops after an unreachable server)."""
    import nnsight

    checks = []
    try:
        _get(host, "/ping", timeout)
        checks.append(Check("server", True, f"{host} answers"))
    except Exception as err:  # noqa: BLE001 - any transport or HTTP error means: no usable server
        return [Check("server", False, f"cannot reach NDIF at {host} ({type(err).__name__}: {err})",
                      "start the server (docs/ndif-self-host.md) or point NDIF_HOST / --remote at it")]
    client = nnsight.__version__
    try:
        env = _get(host, "/env", timeout)
        server = (env.get("packages") or {}).get("nnsight") if isinstance(env, dict) else None
    except Exception as err:  # noqa: BLE001
        server, env = None, f"{type(err).__name__}: {err}"
    if server is None:
        checks.append(Check("versions", False, f"the server does not report its nnsight version ({env})",
                            f"ask its operator which nnsight it runs; this client is nnsight {client}"))
    elif minor(server) != minor(client):
        checks.append(Check("versions", False, f"server nnsight {server}, client nnsight {client}",
                            f"install the server's version: pip install 'nnsight=={server}'"))
    else:
        checks.append(Check("versions", True, f"server nnsight {server}, client nnsight {client}"))
    if isinstance(env, dict):
        checks.append(environment_check(env))
    if repo is None:
        checks.append(Check("model", False, "no hosted model named",
                            "pass --ndif-model (the merged CODI LM on the server) or use --lora-mode interventions"))
        return checks
    try:
        status = _get(host, "/status", timeout)
    except Exception as err:  # noqa: BLE001
        checks.append(Check("model", False, f"GET /status failed ({type(err).__name__}: {err})",
                            "the server's API is up but its cluster is not: check `ndif status` on the server"))
        return checks
    deployments = status.get("deployments", {}) if isinstance(status, dict) else {}
    found = [d for name, d in deployments.items() if (d.get("repo_id") or name) == repo]
    running = [d for d in found if d.get("deployment_level") in DEPLOYED_LEVELS
               and d.get("application_state", "RUNNING") == "RUNNING"]
    if running:
        checks.append(Check("model", True, f"{repo} is deployed ({running[0].get('deployment_level')}, RUNNING)"))
    elif found:
        state = f"{found[0].get('deployment_level')}, {found[0].get('application_state')}"
        checks.append(Check("model", False, f"{repo} is known to the server but not running ({state})",
                            "wait for it to load, or redeploy it (`ndif deploy` on a self-hosted server)"))
    else:
        served = sorted((d.get("repo_id") or n) for n, d in deployments.items())
        checks.append(Check("model", False, f"{repo} is not served (served: {', '.join(served) or 'none'})",
                            "deploy it on the server (`ndif deploy REPO` on a self-hosted NDIF), pick a hosted "
                            "model, or run locally"))
    return checks


def client_environment() -> dict[str, str]:
    """This client's Python, nnsight and transformers versions."""
    import nnsight
    import transformers

    return {"python": platform.python_version(), "nnsight": nnsight.__version__,
            "transformers": transformers.__version__}


def server_environment(env: dict) -> dict[str, str]:
    """The server's Python, nnsight and transformers versions from its `GET /env` answer ('?' if unknown)."""
    packages = env.get("packages") or {}
    python = str(env.get("python_version") or "?").split()[0]
    return {"python": python, "nnsight": str(packages.get("nnsight", "?")),
            "transformers": str(packages.get("transformers", "?"))}


def describe_pair(server: dict[str, str], client: dict[str, str]) -> str:
    """`python 3.12.1 / 3.11.7, nnsight 0.8.1 / 0.8.1, …` (server / client)."""
    return ", ".join(f"{k} {server.get(k, '?')} / {client[k]}" for k in client) + " (server / client)"


def environment_check(env: dict) -> Check:
    """Python and transformers of server and client: reported (they may differ; the probes tell whether
    this project's requests survive the difference).
    """
    server, client = server_environment(env), client_environment()
    differ = [k for k in ("python", "transformers") if minor(server[k]) != minor(client[k])]
    note = f"; differ: {', '.join(differ)} (the probes below check the requests survive it)" if differ else ""
    return Check("environments", True, describe_pair(server, client) + note)


def _probe_run(model: Any, kind: str, remote: Any) -> tuple[Any, list]:
    """One one-question run of `kind` (`remote=None`: here), returning `(tokens, records)`."""
    import torch

    from ..interventions import AddVector, KVSteer
    from ..tracing.branches import Branch, run_branches
    from ..tracing.capture_hook import Capture
    from ..tracing.codi_model import eager_attention
    from ..tracing.loop import run_loop

    prompts = model.encode(["1 + 1 = ?"])
    k, layers = model.num_latents, model.num_layers
    cfg = model._module.config
    heads = int(getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    hooks: list = []
    attention = kind == "attention"
    if kind == "capture":
        hooks = [Capture(["hidden", "latent_input", "kv"], range(layers + 1), k)]
    elif attention:
        hooks = [Capture(["attention"], [layers], k)]
    elif kind == "steer-hidden":
        hooks = [AddVector(torch.ones(model.hidden_size), 1, [1], 1.0)]
    elif kind == "steer-kv":
        hook = KVSteer(torch.ones(layers, heads, head_dim), torch.ones(layers, heads, head_dim), k, 0.5, 0.5)
        hook.validate(layers, heads, head_dim)
        hooks = [hook]
    if kind == "sweep":
        runs = run_branches(model, prompts, [Branch([]), Branch([], 0)], max_new_tokens=2, remote=remote)
        return torch.cat([t for t, _ in runs], 1), [r for _, recs in runs for r in recs]
    if attention and remote is None:
        with eager_attention(model._module):
            return run_loop(model, prompts, hooks, max_new_tokens=2, output_attentions=True)
    return run_loop(model, prompts, hooks, max_new_tokens=2, remote=remote, output_attentions=attention)


def _same(local: tuple[Any, list], remote: tuple[Any, list]) -> str | None:
    """None when a probe's remote run equals the local one, else what differs."""
    import torch

    if local[0].tolist() != remote[0].tolist():
        return f"answer ids differ ({remote[0].tolist()} on the server, {local[0].tolist()} here)"
    for (name, step, a), (_, _, b) in zip(local[1], remote[1]):
        a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float().to(a.device)
        if a.shape != b.shape or not torch.allclose(a, b, atol=1e-3, rtol=1e-3):
            return f"{name} at step {step} differs from a local run"
    return None


def probe_checks(model: Any, remote: Any, kinds: tuple[str, ...], env: dict | None) -> list[Check]:
    """Send one real one-question request of each kind to the server and compare it with a local run."""
    from ..tracing.codi_model import CodiModel
    from ..tracing.remote import count_requests, ndif_error

    pair = describe_pair(server_environment(env), client_environment()) if isinstance(env, dict) else \
        "the server's versions unknown"
    checks = []
    if not isinstance(model, CodiModel):
        kinds = ("generate",)
    for kind in kinds:
        try:
            start = time.perf_counter()
            with count_requests() as log:
                if kind == "generate":
                    remote_run = _generate_probe(model, remote)
                else:
                    remote_run = _probe_run(model, kind, remote)
            seconds = time.perf_counter() - start
            local_run = _generate_probe(model, None) if kind == "generate" else _probe_run(model, kind, None)
        except Exception as err:  # noqa: BLE001 - a probe that fails says why, as one line
            message = str(ndif_error(err, getattr(model, "ndif_repo_id", None) or ""))
            checks.append(Check(f"probe {kind}", False, message, f"versions: {pair}"))
            continue
        differs = _same(local_run, remote_run)
        if differs:
            checks.append(Check(f"probe {kind}", False, differs,
                                f"the server computes something else than this client ({pair}): pin the "
                                "server's transformers on the client, or run locally"))
        else:
            checks.append(Check(f"probe {kind}", True, f"equal to a local run ({log.requests} request(s), "
                                f"{sum(log.raw_bytes):,} bytes, {seconds:.1f} s)"))
    return checks


def _generate_probe(model: Any, remote: Any) -> tuple[Any, list]:
    import torch

    from ..cot.generation import generate_ids

    ids = model.tokenizer("1 + 1 =")["input_ids"]
    tokens = generate_ids(model, [ids], max_new_tokens=2, remote=remote)[0]
    return torch.as_tensor(tokens), []


def audit_checks(args: argparse.Namespace) -> tuple[list[Check], str | None]:
    """Build one eval and one capture request of `--model` (serialised, one question) and audit them.

    Returns the checks and the hosted repo id the model implies (None if it names none).
    """
    from ..loading import load_model
    from ..tracing.codi_model import CodiModel
    from ..tracing.remote import count_requests
    model = load_model(args.model, device=args.device, dtype=args.dtype, base=args.base, lora_mode=args.lora_mode,
                       ndif_repo_id=args.ndif_model)
    checks: list[Check] = []
    if isinstance(model, CodiModel):
        from ..tracing.capture_hook import Capture
        from ..tracing.loop import run_loop

        repo = model.ndif_repo_id
        model.executor("local")  # base + LoRA interventions: the weight check, as a serialised request
        prompts = model.encode(["1 + 1 = ?"])
        kinds = {"eval": [], "capture": [Capture(["hidden", "latent_input", "kv"], range(model.num_layers + 1),
                                                 model.num_latents)]}
        for kind, hooks in kinds.items():
            with count_requests(keep=True) as log:
                run_loop(model, prompts, hooks, max_new_tokens=2, remote="local")
            reports = [audit_request(blob) for blob in log.blobs]
            bad = [r for r in reports if not r.ok]
            size = sum(log.raw_bytes)
            checks.append(Check(f"audit {kind}", not bad,
                                bad[0].summary() if bad else f"{log.requests} request(s), {size:,} bytes: "
                                + reports[0].summary(),
                                "report it: this package's shipped code must stay torch-only"))
        return checks, repo
    from ..cot.generation import generate_ids

    ids = model.tokenizer("1 + 1 =")["input_ids"]
    with count_requests(keep=True) as log:
        generate_ids(model, [ids], max_new_tokens=2, remote="local")
    reports = [audit_request(blob) for blob in log.blobs]
    bad = [r for r in reports if not r.ok]
    checks.append(Check("audit generate", not bad, bad[0].summary() if bad else reports[0].summary(),
                        "report it: this package's shipped code must stay torch-only"))
    return checks, args.ndif_model or args.model


def _env_or_none(host: str, timeout: float) -> dict | None:
    try:
        env = _get(host, "/env", timeout)
    except Exception:  # noqa: BLE001 - already reported by the versions check
        return None
    return env if isinstance(env, dict) else None


def _probe_model(args: argparse.Namespace) -> Any:
    from ..loading import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype, base=args.base, lora_mode=args.lora_mode,
                      ndif_repo_id=args.ndif_model)


def run(args: argparse.Namespace) -> int:
    """Run `nnsight-codi remote-check` from parsed arguments; return 0 if every check passed, else 1."""
    remote = remote_value(args.remote)
    if remote == "local":
        raise ValueError("remote-check checks a server: use --remote ndif or an http(s) host (or omit it)")
    checks: list[Check] = []
    repo = args.ndif_model
    if not args.skip_audit:
        audits, repo = audit_checks(args)
        checks += audits
    elif repo is None and args.lora_mode == "merged" and remote:
        repo = args.model if "/" in args.model and not os.path.exists(args.model) else None
    host = None
    if remote:
        host = resolve_host(remote)
        served = server_checks(host, repo, args.timeout)
        checks = served + checks
        if not args.skip_probes and all(c.ok for c in served if c.name in ("server", "model")):
            from ..tracing.remote import check_remote

            env = _env_or_none(host, args.timeout)
            model = _probe_model(args)
            checks += probe_checks(model, check_remote(remote if isinstance(remote, str) else True),
                                   COMMAND_PROBES[args.command], env)
    failed = [c for c in checks if not c.ok]
    if args.json:
        emit_json({"host": host, "model": repo, "ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        for check in checks:
            print(check.line())
        if not remote:
            print("(no server checked: pass --remote ndif or --remote URL)")
    if failed:
        print("nnsight-codi remote-check: " + "; ".join(c.line()[5:] for c in failed), file=sys.stderr)
        return 1
    return 0
