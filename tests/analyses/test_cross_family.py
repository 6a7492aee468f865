"""The cross-family study end to end on a fabricated CODI and a fabricated Coconut (3 problems), and its
report against the numbers it was given."""

from __future__ import annotations

import json

import pytest
from factories import make_converted

from analyses import cross_family
from nnsight_codi.training.coconut_curriculum import CoconutTrainConfig, train_coconut


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    """A fabricated CODI (K = 2) and a Coconut made by one step of the tiny recipe (K set to 2)."""
    root = tmp_path_factory.mktemp("cf")
    codi = make_converted(root / "codi", "gpt2", num_latents=2)
    cfg = CoconutTrainConfig(out=str(root / "coconut"), train_size=16, eval_size=4, n_layer=1, n_embd=32, n_head=2,
                             stage_steps=(1, 0, 0, 0, 0), batch_size=2, eval_every=0)
    train_coconut(cfg, log=lambda *_: None)
    path = root / "coconut" / "model" / "codi.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "num_latents": 2}))
    return [str(codi), str(root / "coconut" / "model")]


def test_study_runs_every_family_and_reports(specs, tmp_path):
    from runs import cross_family_study as study

    config = study.Config(models=tuple(specs), limit=3, max_new_tokens=3, reference_limit=4, steer_coefs=(0.0, 8.0))
    results = study.run(config, tmp_path / "out", progress=False)
    families = [m["latent_family"] for m in results["models"]]
    assert families == ["codi", "coconut"]
    for m in results["models"]:
        assert set(m["accuracy_by_k"]["latent"]) == {0, 1, 2} and list(m["ablation"]) == ["latent1", "latent2"]
        assert list(m["lens"]) == ["bot", "latent1", "latent2"]
        assert m["accuracy_by_k"]["latent"][0] == m["accuracy_by_k"]["pause"][0]  # K = 0: nothing to feed back
        steering = m["steering"]["conditions"]
        assert [(c["pair"], c["coef"], c["vector"]) for c in steering] == [
            ("latent1-latent2", coef, kind) for coef in (0.0, 8.0) for kind in ("mean_difference", "random")]
        for c in steering:
            assert c["vector_norm"] > 0
            if c["coef"] == 0:  # coefficient 0: the unsteered run, answer for answer
                assert c["changed"] == 0 and c["accuracy"] == m["accuracy_by_k"]["latent"][2]
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Compared with the source" in text and "arxiv.org/abs/2412.06769" in text


def test_report_numbers():
    r = {"models": [{"model": "m", "latent_family": "coconut", "num_latents": 1, "n": 4,
                     "accuracy_by_k": {"latent": {"0": 0.25, "1": 0.75}, "pause": {"0": 0.25, "1": 0.5}},
                     "lens": {"bot": {"intermediate": 0.5, "first_result": 0.25, "final": 0.0, "number": 1.0}},
                     "ablation": {"latent1": 0.5}}]}
    text = cross_family.report(r)
    assert "| latent | 25% | 75% |" in text and "| pause | 25% | 50% |" in text
    assert "| bot | 50% | 25% | 0% | 100% |" in text
    assert cross_family.headline(r) == ["m (coconut): 75% with 1 latents, 25% with 0, 50% under pause"]


def test_steering_table_rows():
    m = {"steering": {"layer": 1, "conditions": [
        {"pair": "latent1-latent2", "coef": 4.0, "vector": "mean_difference", "vector_norm": 2.5, "accuracy": 0.5,
         "changed": 0.25},
        {"pair": "latent1-latent2", "coef": 4.0, "vector": "random", "vector_norm": 2.5, "accuracy": 1.0,
         "changed": 0.0}]}}
    rows = cross_family.steering_table(m)
    assert "| latent1-latent2 | 4 | 2.50 | 50% / 25% | 100% / 0% |" in rows
    assert cross_family.steering_table({}) == []
    coconut = {**m, "model": "c", "latent_family": "coconut", "num_latents": 1,
               "accuracy_by_k": {"latent": {"0": 0.25, "1": 0.75}, "pause": {"0": 0.25, "1": 0.5}}}
    seen = cross_family.observed({"models": [coconut]})
    assert seen[0].startswith("c: 75% with its thoughts, 25% with none, 50% under pause")
    assert seen[1] == "c: ‖mean(latent k) - mean(latent k+1)‖ 2.50 (latent1-latent2) → 2.50 (latent1-latent2)"
