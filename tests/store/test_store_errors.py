"""Refusals: second writer, config mismatch, corrupt manifest, bad inputs — data left intact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import store_testlib as lib

from nnsight_codi.store import (
    ConfigMismatchError,
    ManifestError,
    SchemaError,
    StoreError,
    StoreLockedError,
    StoreWriter,
    open_store,
    parse_variables,
    validate_layers,
)


def snapshot(path: Path) -> dict[str, str]:
    """Hash of every data file of the store (the lock file excluded)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".nnsight_codi.lock"}


@pytest.fixture
def partial(tmp_path):
    """A store with two of its batches written."""
    path = tmp_path / "p.zarr"
    with StoreWriter(path, **lib.writer_kwargs()) as w:
        for idx in list(w.batches())[:2]:
            w.write(idx, lib.batch_data(idx))
    return path


def test_second_writer_refused(partial):
    with StoreWriter(partial, **lib.writer_kwargs()) as w:
        before = snapshot(partial)
        with pytest.raises(StoreLockedError, match="another process"):
            StoreWriter(partial, **lib.writer_kwargs()).open()
        assert snapshot(partial) == before
        idx = w.pending()[:2]
        w.write(idx, lib.batch_data(idx))  # the first writer still works
    with StoreWriter(partial, **lib.writer_kwargs()) as w:  # released on close
        assert w.num_completed == 2 * lib.CHUNK + 2


def test_config_mismatch_refused_with_key(partial):
    before = snapshot(partial)
    kw = lib.writer_kwargs()
    kw["config"] = dict(kw["config"], num_latents=5, dataset="gsm8k")
    with pytest.raises(ConfigMismatchError) as e:
        StoreWriter(partial, **kw).open()
    message = str(e.value)
    assert f"num_latents {lib.K} -> 5" in message
    assert "dataset" in message and "model_id" not in message
    # one short readable line: the differing configuration keys, then what to do
    assert "\n" not in message and ":;" not in message and len(message) < 300 + len(str(partial)), message
    assert message.endswith("use another output path, or delete the store to capture again")
    assert any("config.num_latents" in d for d in e.value.differences)
    assert not any(k in message for k in ("layout.", "examples_sha256"))  # derived keys only when nothing else differs
    with pytest.raises(ConfigMismatchError, match="layout.dtype"):
        StoreWriter(partial, **lib.writer_kwargs(dtype="float16")).open()
    with pytest.raises(ConfigMismatchError, match="layout.variables"):
        StoreWriter(partial, **lib.writer_kwargs(variables=["hidden"])).open()
    assert snapshot(partial) == before
    with StoreWriter(partial, **lib.writer_kwargs()) as w:  # lock released after refusals
        assert w.num_completed == 2 * lib.CHUNK


@pytest.mark.parametrize("text", ["{not json", '{"format": "nnsight-codi-manifest"}',
                                  None])
def test_corrupt_manifest(partial, text):
    manifest = partial / "manifest.json"
    if text is None:  # valid JSON, impossible ranges
        import json
        data = json.loads(manifest.read_text())
        data["completed"] = [[5, 2]]
        text = json.dumps(data)
    manifest.write_text(text)
    before = snapshot(partial)
    with pytest.raises(ManifestError, match="corrupt manifest"):
        StoreWriter(partial, **lib.writer_kwargs()).open()
    with pytest.raises(ManifestError):
        open_store(partial)
    assert snapshot(partial) == before


def test_missing_manifest_and_foreign_directory_refused(partial, tmp_path):
    (partial / "manifest.json").unlink()
    before = snapshot(partial)
    with pytest.raises(StoreError, match="no manifest"):
        StoreWriter(partial, **lib.writer_kwargs()).open()
    assert snapshot(partial) == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        StoreWriter(other, **lib.writer_kwargs()).open()
    assert [x.name for x in other.iterdir()] == ["keep.txt"]  # not even a lock file left


def test_bad_inputs_fail_before_any_work(tmp_path):
    path = tmp_path / "new.zarr"
    with pytest.raises(SchemaError, match=r"unknown variable\(s\) 'hiden'.*valid: hidden"):
        StoreWriter(path, **lib.writer_kwargs(variables=["hiden", "correct"]))
    with pytest.raises(SchemaError, match="unknown variable"):
        parse_variables("hidden,attn")
    with pytest.raises(SchemaError, match=r"layer 4 out of range.*0\.\.3"):
        StoreWriter(path, **lib.writer_kwargs(
            coords=dict(lib.writer_kwargs()["coords"], layer=[0, 4])))
    with pytest.raises(SchemaError, match="given twice"):
        validate_layers([1, -3], num_layers=3)
    assert validate_layers([-1, 0], num_layers=3) == (3, 0)
    with pytest.raises(SchemaError, match="dtype"):
        StoreWriter(path, **lib.writer_kwargs(dtype="bfloat16"))
    with pytest.raises(SchemaError, match="sizes missing.*head"):
        StoreWriter(path, **lib.writer_kwargs(sizes=dict(dim=4, position=3, k=2)))
    with pytest.raises(SchemaError, match="JSON"):
        StoreWriter(path, **lib.writer_kwargs(config={"fn": print}))
    assert not path.exists()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot"):
        StoreWriter(blocker / "s.zarr", **lib.writer_kwargs()).open()
    with pytest.raises(StoreError, match="not a directory"):
        StoreWriter(blocker, **lib.writer_kwargs()).open()
    assert blocker.read_text() == "x"


def test_bad_batches_rejected_before_writing(partial):
    before = snapshot(partial)
    with StoreWriter(partial, **lib.writer_kwargs()) as w:
        idx = w.pending()[:2]
        good = lib.batch_data(idx)
        bad_cases = [
            ({k: v for k, v in good.items() if k != "correct"}, "missing"),
            (dict(good, extra=np.zeros(2)), "unexpected"),
            (dict(good, hidden=good["hidden"][:, :1]), "shape"),
            (dict(good, prompt_ids=np.zeros((2, lib.P + 1), int)), "max width"),
            (dict(good, lens_top_ids=good["lens_top_ids"].astype(float)), "integer"),
        ]
        for data, message in bad_cases:
            with pytest.raises(SchemaError, match=message):
                w.write(idx, data)
        with pytest.raises(SchemaError, match="in 0.."):
            w.write([lib.N], lib.batch_data(np.array([0])))
    assert snapshot(partial) == before
    with pytest.raises(StoreError, match="not open"):
        w.write(idx, good)
