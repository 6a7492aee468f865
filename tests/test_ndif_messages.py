"""NDIF failure messages (issue #30): the server's exception line kept whole, advice chosen from the
exception's type and line (not from a word anywhere in a traceback), the Hub-id refusal of a local
`--ndif-model` directory as one clear line, and `--json --remote` output that stays parseable."""

from __future__ import annotations

import json

import pytest

from nnsight_codi.cli import main
from nnsight_codi.tracing.remote import NdifError, exception_line, ndif_error

TRACEBACK = "\n".join(
    ["Traceback (most recent call last):"]
    + [f'  File "/root/.pyenv/versions/3.12.1/lib/python3.12/site-packages/nnsight/frame{i}.py", line {i}, in run'
       for i in range(12)]
    + ["AttributeError: 'CausalLMOutputWithCrossAttentions' object has no attribute 'cache'"])


class RemoteError(Exception):
    """Stands in for nnsight's RemoteError (same name: the CLI recognises remote failures by it)."""


def test_the_exception_line_survives_a_long_traceback():
    message = str(ndif_error(RemoteError(TRACEBACK)))
    assert len(TRACEBACK) > 400 and "\n" not in message
    assert "AttributeError: 'CausalLMOutputWithCrossAttentions' object has no attribute 'cache'" in message
    assert message.startswith("NDIF run failed (RemoteError: Traceback (most recent call last):")


def test_a_path_with_versions_does_not_make_version_advice():
    message = str(ndif_error(RemoteError(TRACEBACK)))
    assert "/versions/" in TRACEBACK and "disagree on versions" not in message
    assert "failed while running on the server" in message and "--remote local" in message


@pytest.mark.parametrize("text, advice", [
    ("Your request payload could not be read (AttributeError: Can't get attribute '_is_callable_members_only' "
     "on <module 'typing' from '/usr/lib/python3.12/typing.py'>)", "could not load the request"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: stack expects a non-empty "
     "TensorList", "failed while running on the server"),
    ("ImportError: Module dataclasses is not whitelisted", "sandbox refused"),
    ("Client nnsight version 0.7.0 is below the minimum supported version 0.8.0.", "disagree on versions"),
    ("Could not deploy this model. No GPU nodes available.", "could not start the model"),
    ("Your job exceeded the execution timeout of 3600.0s.", "timed out"),
])
def test_advice_follows_the_exception(text, advice):
    assert advice in str(ndif_error(RemoteError(text)))


def test_exception_line():
    assert exception_line(TRACEBACK)[0] == "AttributeError"
    assert exception_line("Could not deploy this model.") == (None, "Could not deploy this model.")
    assert exception_line("torch.cuda.OutOfMemoryError: CUDA out of memory")[0] == "OutOfMemoryError"


def test_client_side_connection_errors():
    class ConnectError(Exception):
        pass

    assert "cannot reach NDIF" in str(ndif_error(ConnectError("[Errno 111] Connection refused")))
    assert isinstance(ndif_error(ConnectError("x")), NdifError)


def test_local_ndif_model_directory_is_one_clear_line(monkeypatch, capsys, tmp_path):
    """huggingface_hub refuses a directory as a repo id when nnsight names the hosted model (real error type)."""
    from huggingface_hub.utils import HFValidationError

    from nnsight_codi.commands import eval as eval_command

    def refused(args):
        raise HFValidationError(f"Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{tmp_path}'. "
                                "Use `repo_type` argument if needed.")

    monkeypatch.setenv("NDIF_API_KEY", "k")
    monkeypatch.setattr(eval_command, "run", refused)
    assert main(["eval", "--model", "tiny", "--remote", "ndif", "--ndif-model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be named by a Hub id" in err and "self-hosted NDIF" in err


def test_json_with_remote_keeps_stdout_parseable(monkeypatch, capsys):
    """nnsight writes its request status lines to stdout: with --json and --remote they go to stderr."""
    import sys

    from nnsight_codi.commands import common
    from nnsight_codi.commands import eval as eval_command

    def run(args):
        sys.stdout.write("\r\x1b[K● [abc] RECEIVED     Your job has been received\n")  # what nnsight prints
        common.emit_json({"accuracy": 0.5})

    monkeypatch.setenv("NDIF_API_KEY", "k")
    monkeypatch.setattr(eval_command, "run", run)
    assert main(["eval", "--model", "tiny", "--remote", "ndif", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"accuracy": 0.5}
    assert "RECEIVED" in captured.err
