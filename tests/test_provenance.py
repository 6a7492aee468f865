"""Every results.json records where it came from: package version and commit, library versions, the
model's unambiguous shipped name and weights fingerprint, seed and config."""

from __future__ import annotations

import json
import subprocess
import types
from importlib.metadata import version
from pathlib import Path

import nnsight_codi
from nnsight_codi.reporting import write_results, write_study

ROOT = Path(__file__).resolve().parents[1]


def _study():
    return types.SimpleNamespace(TITLE="T", headline=lambda r: ["h"], report_sections=lambda r: [("S", "body")],
                                 compare_with_source=lambda r: [])


def test_write_study_records_versions_commit_model_and_config(tmp_path):
    from nnsight_codi.loading import load_model
    from nnsight_codi.models.fingerprint import weights_fingerprint

    codi = load_model("tiny-instruct-v3")  # the unambiguous name loads the shipped `tiny-instruct`
    write_study(tmp_path, _study(), {"config": {"model": "tiny-instruct", "seed": 7, "limit": 3}}, model=codi)
    prov = json.loads((tmp_path / "results.json").read_text())["provenance"]
    assert prov["package"] == {"name": "nnsight-codi", "version": nnsight_codi.__version__}
    assert prov["versions"]["torch"] == version("torch") and prov["versions"]["nnsight"] == version("nnsight")
    assert prov["versions"]["transformers"] == version("transformers")
    assert prov["model"] == {"spec": "tiny-instruct", "shipped_name": "tiny-instruct-v3",
                             "weights": weights_fingerprint(codi._module)}
    assert prov["seed"] == 7 and prov["config"] == {"model": "tiny-instruct", "seed": 7, "limit": 3}
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a source checkout (not an sdist)
        assert prov["git"]["commit"] == head.stdout.strip()


def test_a_model_without_a_spec_is_named_from_its_directory_and_old_results_keep_theirs(tmp_path):
    from nnsight_codi.loading import load_model

    codi = load_model("tiny")
    write_results(tmp_path / "a", {"config": {}}, model=codi)
    model = json.loads((tmp_path / "a" / "results.json").read_text())["provenance"]["model"]
    assert model["shipped_name"] == "tiny" and len(model["weights"]) == 16
    old = {"config": {"model": "tiny-instruct"}, "provenance": {"git": {"commit": "abc"}}}
    write_results(tmp_path / "b", old)
    assert json.loads((tmp_path / "b" / "results.json").read_text())["provenance"] == {"git": {"commit": "abc"}}
    write_study(tmp_path / "c", _study(), {"config": {"model": "tiny-instruct"}, "headline": ["old"]}, headline=False)
    assert "provenance" not in json.loads((tmp_path / "c" / "results.json").read_text())
