"""The demo's worked examples are the lens study's own (its results.json, at the layers its `best_layer` rule
picks), read back without running the model; none when the lens study did not run or failed."""

from __future__ import annotations

import html
import json
from dataclasses import replace

from nnsight_codi.commands.demo import lens_worked_examples
from nnsight_codi.demo_index import write_index
from nnsight_codi.reporting import write_results
from nnsight_codi.studies import Study, StudyOutcome


def test_the_demo_shows_the_lens_studys_worked_examples(study_dir, tmp_path):
    from analyses.lens_study import analyse

    result = analyse(study_dir, probes=False)
    write_results(tmp_path / "lens", result)
    ran = StudyOutcome(Study("lens", "runs.lens_study", "Lens study"), tmp_path / "lens", "ok")
    written = json.loads((tmp_path / "lens" / "results.json").read_text())["worked_examples"]
    worked = lens_worked_examples([ran], 2)
    assert worked == written[:2] and len(worked) == 2
    assert lens_worked_examples([ran], 5) == written and len(written) == 3  # the study keeps 3
    best = result["best_layer"]
    for example in worked:
        assert [s["step_name"] for s in example["steps"]] == ["bot", "latent1", "latent2", "latent3", "latent4",
                                                              "latent5", "latent6", "eot"]
        for step in example["steps"]:  # one rule: the lens study's best layer of each step
            assert step["layer"] == best[step["step_name"]]
            assert step["probs"] == sorted(step["probs"], reverse=True)
    assert lens_worked_examples([replace(ran, status="failed")], 2) == []
    assert lens_worked_examples([replace(ran, study=Study("steering", "runs.steering_study", "Steering"))], 2) == []
    assert lens_worked_examples([], 2) == [] and lens_worked_examples([ran], 0) == []

    page = write_index(tmp_path, {"model": "tiny", "n": 4, "accuracy": 0.5}, worked, [ran]).read_text()
    step = worked[0]["steps"][1]
    assert html.escape(f"{step['step_name']}→", quote=True) + f"<code>{html.escape(step['tokens'][0], quote=True)}" \
        f"</code><small>@L{step['layer']}</small>" in page
