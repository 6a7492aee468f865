"""Write random arrays, read them back (open_store and plain xarray), helpers, info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from argparse import Namespace

import numpy as np
import pytest
import store_testlib as lib
import zarr

from nnsight_codi.commands import info
from nnsight_codi.store import (
    SCHEMA_VERSION,
    SchemaVersionError,
    StoreWriter,
    concat_conditions,
    concat_stores,
    left_align,
    open_store,
    pad_counts_from_mask,
    select_correct,
    select_steps,
)


@pytest.fixture(scope="module")
def store32(tmp_path_factory):
    path = tmp_path_factory.mktemp("s32") / "s.zarr"
    lib.write_all(path)
    return path


def test_roundtrip_float32_exact(store32):
    ds = open_store(store32)
    assert ds.hidden.dims == ("example", "step", "layer", "dim")
    assert ds.kv.dims == ("example", "layer", "kv_part", "head", "position", "head_dim")
    assert ds.attention.dims == ("example", "step", "position")
    assert ds.lens_top_ids.dims == ("example", "step", "layer", "k")
    assert ds.prompt_ids.dims == ("example", "position")
    assert ds.hidden.chunks is not None and ds.hidden.encoding["chunks"][0] == lib.CHUNK  # lazy; stored by batch
    assert ds.step_name.values.tolist() == ["bot", "latent1", "latent2", "eot"]
    assert ds.layer.values.tolist() == list(range(lib.L + 1))
    assert ds.kv_part.values.tolist() == ["key", "value"]
    assert ds.question.values[3] == "question 3?"
    assert "embedding output" in ds.layer.attrs["description"]
    assert ds.hidden.dtype == np.float32 and ds.lens_top_ids.dtype == np.int32
    for i in (0, 5, lib.N - 1):
        for name in lib.ALL_VARS + ["prompt_length"]:
            np.testing.assert_array_equal(ds[name].isel(example=i).values,
                                          lib.expected(i, name), err_msg=name)
    a = ds.attrs
    assert a["schema_version"] == SCHEMA_VERSION and a["model_id"] == "tiny-test"
    assert a["model_revision"] == "r1" and a["num_latents"] == lib.K
    assert a["interventions"] == [] and a["variables"] == lib.ALL_VARS
    assert a["versions"]["xarray"] and a["versions"]["nnsight-codi"]
    assert a["config"]["limit"] == lib.N and a["created"] and a["command"] == "test"


def test_roundtrip_float16(tmp_path):
    path = tmp_path / "s16.zarr"
    lib.write_all(path, dtype="float16")
    ds = open_store(path)
    assert ds.hidden.dtype == np.float16 and ds.kv.dtype == np.float16
    np.testing.assert_allclose(ds.hidden.values[2], lib.expected(2, "hidden"), rtol=1e-3,
                               atol=1e-3)
    np.testing.assert_array_equal(ds.lens_top_ids.values[2], lib.expected(2, "lens_top_ids"))


def test_float16_overflow_warns(tmp_path):
    kw = lib.writer_kwargs(variables=["hidden"], dtype="float16")
    with StoreWriter(tmp_path / "o.zarr", **kw) as w:
        big = np.full((1, lib.K + 2, lib.L + 1, lib.D), 1e6, np.float32)
        with pytest.warns(UserWarning, match="float16 range"):
            w.write([0], {"hidden": big})


def test_plain_xarray_opens_without_package(store32):
    code = textwrap.dedent(f"""
        import json, sys, warnings
        warnings.simplefilter("error")
        import xarray as xr
        ds = xr.open_zarr({str(store32)!r})
        assert not any(m.startswith("nnsight_codi") for m in sys.modules)
        print(json.dumps({{
            "dims": {{k: int(v) for k, v in ds.sizes.items()}},
            "var_dims": {{k: list(v.dims) for k, v in ds.data_vars.items()}},
            "coords": sorted(ds.coords),
            "step_name": [str(s) for s in ds.step_name.values],
            "example": [str(s) for s in ds.example.values],
            "hidden0": ds.hidden.isel(example=0).values.ravel()[:5].tolist(),
        }}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", env={k: v for k, v in os.environ.items()
                                       if k != "PYTHONPATH"}, timeout=60)
    assert out.returncode == 0, out.stderr
    plain = json.loads(out.stdout)
    ds = open_store(store32)
    assert plain["dims"] == {k: int(v) for k, v in ds.sizes.items()}
    assert plain["var_dims"] == {k: list(v.dims) for k, v in ds.data_vars.items()}
    assert plain["coords"] == sorted(ds.coords)
    assert plain["step_name"] == ["bot", "latent1", "latent2", "eot"]
    assert plain["example"] == [f"ex{i:03d}" for i in range(lib.N)]
    assert plain["hidden0"] == lib.expected(0, "hidden").ravel()[:5].tolist()


def test_only_complete_examples_exposed(tmp_path):
    path = tmp_path / "part.zarr"
    with StoreWriter(path, **lib.writer_kwargs()) as w:
        idx = np.array([4, 5, 6, 7])
        w.write(idx, lib.batch_data(idx))
    assert open_store(path).example.values.tolist() == ["ex004", "ex005", "ex006", "ex007"]
    full = open_store(path, complete_only=False)
    assert full.sizes["example"] == lib.N
    assert full.complete.values.sum() == 4 and np.isnan(full.hidden.values[0]).all()


def test_selection_and_concat_helpers(store32, tmp_path):
    ds = open_store(store32)
    one = select_steps(ds, "latent2")
    assert "step" not in one.hidden.dims and int(one.step) == 2
    two = select_steps(ds, ["bot", "eot"])
    assert two.step_name.values.tolist() == ["bot", "eot"] and two.step.values.tolist() == [0, 3]
    assert select_steps(ds, 1).step_name.item() == "latent1"
    with pytest.raises(KeyError, match="latent9.*bot"):
        select_steps(ds, "latent9")
    right = select_correct(ds, True)
    wrong = select_correct(ds, False)
    assert right.correct.values.all() and not wrong.correct.values.any()
    assert right.sizes["example"] + wrong.sizes["example"] == lib.N

    # a second store of other examples with a narrower position width
    other = tmp_path / "other.zarr"
    kw = lib.writer_kwargs(sizes=dict(dim=lib.D, position=lib.P - 1, k=lib.KTOP, head=lib.H,
                                      head_dim=lib.HD))
    kw["coords"] = dict(kw["coords"], example=[f"b{i}" for i in range(lib.N)])
    lib.write_all(other, **{k: v for k, v in kw.items() if k in ("sizes", "coords")})
    both = concat_stores([store32, other])
    assert both.sizes["example"] == 2 * lib.N and both.sizes["position"] == lib.P
    assert both.prompt_ids.dtype == np.int32 and int(both.prompt_ids.values[-1, -1]) == -1
    np.testing.assert_array_equal(both.hidden.values[lib.N], lib.expected(0, "hidden"))
    with pytest.raises(Exception, match="repeat"):
        concat_stores([store32, store32])

    cond = concat_conditions({"base": ds, "again": open_store(store32).isel(example=[1, 2])})
    assert cond.hidden.dims[0] == "condition" and cond.condition.values.tolist() == [
        "base", "again"]
    assert cond.sizes["example"] == 2  # inner join on examples


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_schema_version_checked(tmp_path):
    path = tmp_path / "v.zarr"
    with StoreWriter(path, **lib.writer_kwargs(variables=["correct"])):
        pass
    g = zarr.open_group(path, mode="r+", use_consolidated=False)
    g.attrs["schema_version"] = SCHEMA_VERSION + 1
    zarr.consolidate_metadata(path)
    with pytest.raises(SchemaVersionError, match="newer|Upgrade"):
        open_store(path)


def test_left_align_and_pad_counts():
    mask = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    pads = pad_counts_from_mask(mask)
    assert pads.tolist() == [2, 0]
    x = np.array([[[0, 0, 3, 4]], [[5, 6, 7, 8]]], dtype=float)
    out = left_align(x, pads, axis=-1)
    np.testing.assert_array_equal(out[0, 0, :2], [3, 4])
    assert np.isnan(out[0, 0, 2:]).all() and out[1].tolist() == [[5, 6, 7, 8]]


def test_info_command(store32, capsys):
    assert info.run(Namespace(store=str(store32), json=True)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["examples"] == {"total": lib.N, "completed": lib.N, "ranges": [[0, lib.N]]}
    assert data["variables"]["hidden"]["dims"] == ["example", "step", "layer", "dim"]
    assert data["bytes_on_disk"] > 0 and data["provenance"]["model_id"] == "tiny-test"
    assert info.run(Namespace(store=str(store32), json=False)) == 0
    text = capsys.readouterr().out
    assert "14/14 complete" in text and "hidden" in text and "tiny-test" in text
    from nnsight_codi import cli

    capsys.readouterr()
    assert cli.main(["info", str(store32) + "-missing"]) == 2  # like every other command: status 2, its prefix
    err = capsys.readouterr().err
    assert err.startswith("nnsight-codi info: error: ") and err.count("\n") == 1, err
    assert info.main([str(store32) + "-missing"]) == 2  # the module's own main says the same
    assert capsys.readouterr().err == err
