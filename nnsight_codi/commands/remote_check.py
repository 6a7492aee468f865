r"""`nnsight-codi remote-check`: before a long remote run, check the NDIF server, the model and the request.

Checks, each printed as `ok`/`FAIL` with what to do:

1. **server**: `GET /ping` on the host (`--remote URL`, else `NDIF_HOST`, else nnsight's configured host);
2. **versions**: the server's nnsight (`GET /env`) against this client's — nnsight 0.8 requests are
   only read by a server of the same minor version;
3. **model**: the hosted repo (`--ndif-model`, the base of a `--lora-mode interventions` checkpoint, or
   `--model` itself for a plain LM) is deployed and running (`GET /status`);
4. **request audit**: one eval and one capture request of the model, serialised as NDIF receives
   them (`remote="local"`, one question), against NDIF's sandbox whitelist (`tracing/request_audit.py`).

Without `--remote` only the audit runs. Exit status 0 when everything passes, 1 otherwise (the
failures on stderr, one line).

Example:
    $ nnsight-codi remote-check --model tiny
    $ NDIF_HOST=http://127.0.0.1:8001 nnsight-codi remote-check --model zen-E/CODI-gpt2 \
        --lora-mode interventions --remote ndif
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

from .common import add_model_args, remote_value

DEPLOYED_LEVELS = ("HOT", "WARM")


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


def audit_checks(args: argparse.Namespace) -> tuple[list[Check], str | None]:
    """Build one eval and one capture request of `--model` (serialised, one question) and audit them.

    Returns the checks and the hosted repo id the model implies (None if it names none).
    """
    from ..loading import load_model
    from ..tracing.codi_model import CodiModel
    from ..tracing.remote import count_requests
    from ..tracing.request_audit import audit_request

    model = load_model(args.model, device=args.device, dtype=args.dtype, base=args.base, lora_mode=args.lora_mode,
                       ndif_repo_id=args.ndif_model)
    checks: list[Check] = []
    if isinstance(model, CodiModel):
        from ..tracing.capture import Capture
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
        checks = server_checks(host, repo, args.timeout) + checks
    failed = [c for c in checks if not c.ok]
    if args.json:
        json.dump({"host": host, "model": repo, "ok": not failed, "checks": [asdict(c) for c in checks]},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for check in checks:
            print(check.line())
        if not remote:
            print("(no server checked: pass --remote ndif or --remote URL)")
    if failed:
        print("nnsight-codi remote-check: " + "; ".join(c.line()[5:] for c in failed), file=sys.stderr)
        return 1
    return 0
