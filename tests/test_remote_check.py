"""`nnsight-codi remote-check` against a fake NDIF API on loopback: no server, version skew, model not
served, all fine; and the audit on the shipped tiny model."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import nnsight
import pytest

from nnsight_codi.cli import main


class FakeNdif:
    """A tiny HTTP server answering /ping, /env and /status like NDIF's API."""

    def __init__(self, nnsight_version: str, deployments: dict) -> None:
        replies = {"/ping": "pong", "/env": {"python_version": "3.12.1", "packages": {"nnsight": nnsight_version}},
                   "/status": {"deployments": deployments}}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = replies.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body if body is not None else {"detail": "Not Found"}).encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def deployment(repo: str, level: str = "HOT", state: str = "RUNNING") -> dict:
    return {repo: {"model_key": f"nnsight.modeling.transformers.TransformersModel:{repo}", "repo_id": repo,
                   "deployment_level": level, "application_state": state}}


@pytest.fixture
def fake():
    servers = []

    def make(version: str = nnsight.__version__, deployments: dict | None = None) -> FakeNdif:
        server = FakeNdif(version, deployment("org/codi-gpt2") if deployments is None else deployments)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def check(capsys, *argv: str) -> tuple[int, dict, str]:
    code = main(["remote-check", "--model", "org/codi-gpt2", "--skip-audit", "--skip-probes", "--json", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_all_fine(fake, capsys):
    server = fake()
    code, report, err = check(capsys, "--remote", server.url)
    assert code == 0 and report["ok"] and err == ""
    assert [c["name"] for c in report["checks"]] == ["server", "versions", "environments", "model"]
    env = report["checks"][2]
    assert env["ok"] and "python 3.12.1 / 3." in env["detail"] and "(server / client)" in env["detail"]
    assert report["host"] == server.url and report["model"] == "org/codi-gpt2"


def test_no_server(capsys):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, report, err = check(capsys, "--remote", f"http://127.0.0.1:{port}", "--timeout", "2")
    assert code == 1 and [c["name"] for c in report["checks"]] == ["server"]
    assert err.count("\n") == 1 and "cannot reach NDIF at http://127.0.0.1" in err and "NDIF_HOST" in err


def test_version_skew(fake, capsys):
    server = fake(version="0.5.15")
    code, report, err = check(capsys, "--remote", server.url)
    assert code == 1
    versions = next(c for c in report["checks"] if c["name"] == "versions")
    assert not versions["ok"] and "server nnsight 0.5.15" in versions["detail"]
    assert "pip install 'nnsight==0.5.15'" in err and err.count("\n") == 1


def test_model_not_served_and_not_running(fake, capsys, monkeypatch):
    server = fake(deployments=deployment("openai-community/gpt2"))
    monkeypatch.setenv("NDIF_HOST", server.url)  # --remote ndif reads the host from NDIF_HOST
    code, report, err = check(capsys, "--remote", "ndif")
    model = next(c for c in report["checks"] if c["name"] == "model")
    assert code == 1 and not model["ok"] and "not served (served: openai-community/gpt2)" in model["detail"]
    assert "ndif deploy" in err
    server = fake(deployments=deployment("org/codi-gpt2", level="COLD", state="DEPLOYING"))
    code, report, err = check(capsys, "--remote", server.url)
    assert code == 1 and "not running (COLD, DEPLOYING)" in err


def test_audit_of_the_tiny_model_and_text_output(fake, capsys):
    server = fake(deployments=deployment("org/tiny-codi"))
    code = main(["remote-check", "--model", "tiny", "--ndif-model", "org/tiny-codi", "--remote", server.url,
                 "--skip-probes"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith(("ok", "FAIL"))]
    assert [line.split(":")[0] for line in lines] == ["ok   server", "ok   versions", "ok   environments", "ok   model",
                                                     "ok   audit eval",
                                                     "ok   audit capture"]
    assert "passes NDIF's whitelist (028db44)" in out


def test_remote_local_is_a_user_error(capsys):
    assert main(["remote-check", "--model", "tiny", "--remote", "local", "--skip-audit"]) == 2
    assert "use --remote ndif" in capsys.readouterr().err


@pytest.mark.parametrize("message, advice", [
    ("ImportError: Module dataclasses is not whitelisted", "NDIF's sandbox refused code in the request"),
    ("Your job exceeded the execution timeout of 3600.0s.", "timed out"),
    ("Client nnsight version 0.7.0 is below the minimum supported version 0.8.0.", "disagree on versions"),
    ("Could not deploy this model. No GPU nodes available.", "could not start the model"),
    ("The model architecture on this server doesn't match: it has no module at 'model.prj'", "module tree"),
])
def test_remote_failures_of_any_command_are_one_line(monkeypatch, capsys, message, advice):
    from nnsight.intervention.backends.remote import RemoteError

    from nnsight_codi.commands import eval as eval_command

    def refused(args):
        raise RemoteError(message)

    monkeypatch.setattr(eval_command, "run", refused)
    assert main(["eval", "--model", "tiny", "--remote", "ndif"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nnsight-codi eval: error: NDIF run failed (RemoteError: ")
    assert advice in err


def test_hosted_merged_model_wrapper_builds_offline():
    """`--ndif-model` naming a model directory (a self-hosted NDIF serving it): the client's stock wrapper
    takes the CODI tokenizer (transformers 5.23's pipeline infers none for a pre-built meta model)."""
    from pathlib import Path

    import nnsight_codi
    from nnsight_codi.loading import load_model
    from nnsight_codi.tracing.session import plain_lm_model

    codi = load_model("tiny")
    object.__setattr__(codi, "ndif_repo_id", str(Path(nnsight_codi.__file__).parent / "assets" / "tiny-codi"))
    lm = plain_lm_model(codi, True)
    assert lm.tokenizer is codi.tokenizer and lm.repo_id == codi.ndif_repo_id
