"""A hub id that is not cached fails at once without network, with the one-line message (not after
~40 s of the hub client's retries)."""

from __future__ import annotations

import time

import pytest

from nnsight_codi import cli


@pytest.mark.parametrize("offline_env", [True, False])
def test_uncached_hub_id_fails_in_seconds_without_network(offline_env, monkeypatch, capsys):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # the Hub's host unreachable (nothing listens on the discard port)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    import nnsight_codi.commands.eval  # noqa: F401  (imports warm: only the refusal is timed)
    import nnsight_codi.evaluation  # noqa: F401
    import nnsight_codi.loading  # noqa: F401

    cli.build_parser()
    start = time.perf_counter()
    code = cli.main(["eval", "--model", "nobody-here/not-a-cached-model", "--limit", "1"])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot load model nobody-here/not-a-cached-model: no network (" in err
    assert "not in the local Hugging Face cache" in err
    assert seconds < 10, seconds


def test_offline_check_leaves_cached_and_local_models_alone(monkeypatch, tmp_path):
    from nnsight_codi.models.hub import fail_fast_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fail_fast_offline(str(tmp_path))  # a path is not a repo id: the loader's own checks apply
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    snap = cache / "models--someone--cached" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--someone--cached" / "refs").mkdir()
    (cache / "models--someone--cached" / "refs" / "main").write_text("abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    fail_fast_offline("someone/cached")  # cached: no error
    with pytest.raises(OSError, match="someone/missing: no network"):
        fail_fast_offline("someone/missing")
