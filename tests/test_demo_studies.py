"""The demo's study runner and index page, with stand-in study modules."""

from __future__ import annotations

import json
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nnsight_codi.demo_index import write_index
from nnsight_codi.studies import Study, run_study, select_studies

GOOD = '''
from dataclasses import dataclass
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from nnsight_codi.reporting import save_figure, write_report, write_results

@dataclass
class Config:
    n: int = 100
    model: str = "tiny"

def demo_config():
    return Config(n=3)

def run(config, out, progress=True):
    fig, ax = plt.subplots()
    ax.plot(range(config.n))
    fig_path = save_figure(fig, out, "curve")
    results = {"n": config.n, "model": config.model, "headline": [f"n was {config.n}", "a <b> tag is escaped"]}
    write_results(out, results)
    write_report(out, "Stand-in", [("Result", f"| n |\\n|---|\\n| {config.n} |")], [fig_path], config={"n": config.n})
    return results
'''
BAD = '''
def demo_config():
    return None

def run(config, out, progress=True):
    raise RuntimeError("boom")
'''


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if key in attrs and not attrs[key].startswith("#"):
                self.targets.append(attrs[key])


@pytest.fixture
def study_modules(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_runs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(textwrap.dedent(GOOD))
    (pkg / "bad.py").write_text(textwrap.dedent(BAD))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Study("good", "fake_runs.good", "A good study"), Study("bad", "fake_runs.bad", "A failing study")
    for name in ("fake_runs", "fake_runs.good", "fake_runs.bad"):
        sys.modules.pop(name, None)


def test_studies_run_fail_alone_and_the_index_links_every_output(study_modules, tmp_path):
    good, bad = study_modules
    root = tmp_path / "demo"
    ok = run_study(good, root / "good", progress=False, overrides={"model": "other", "absent": 1})
    failed = run_study(bad, root / "bad", progress=False)
    missing = run_study(Study("gone", "fake_runs.gone", "Not in this checkout"), root / "gone", progress=False)
    assert ok.status == "ok" and ok.headline == ["n was 3", "a <b> tag is escaped"]
    assert (root / "good" / "results.json").read_text().count('"other"') == 1  # the override reached the config
    assert failed.status == "failed" and "boom" in failed.error and "RuntimeError" in (root / "bad" / "error.txt").read_text()
    assert missing.status == "unavailable"

    summary = {"model": "tiny", "num_latents": 2, "n": 4, "accuracy": 0.75, "accuracy_k0": 0.25}
    worked = [{"question": "Q?", "answer": 1.0, "correct": True,  # a lens-study worked example
               "steps": [{"step_name": "bot", "layer": 1, "tokens": ["x", "y"], "probs": [0.5, 0.25]}]}]
    index = write_index(root, summary, worked, [ok, failed, missing])
    page = index.read_text()
    assert "<td>Q?</td><td>1</td><td>yes</td><td>bot→<code>x</code><small>@L1</small></td>" in page
    assert "a &lt;b&gt; tag is escaped" in page and "75.0%" in page and "boom" in page
    parser = Links()
    parser.feed(page)
    local = [t for t in parser.targets if not t.startswith("http")]
    assert "good/report.html" in local and "good/figures/curve.png" in local and "good/results.json" in local
    for target in local:
        if target not in ("eval/predictions.jsonl", "summary.json"):  # written by the demo command itself
            assert (root / target).exists(), target
    report_html = (root / "good" / "report.html").read_text()
    assert "<table>" in report_html and "figures/curve.png" in report_html


def test_unknown_study_name_is_refused():
    with pytest.raises(ValueError, match="unknown study"):
        select_studies("lens,nope")
    assert select_studies("none") == [] and [s.name for s in select_studies("all")][0] == "lens"


def test_index_page_renders_in_headless_chromium(study_modules, tmp_path):
    from nnsight_codi.dashboard.browser import dump_dom, find_chromium, screenshot

    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    import matplotlib.image

    good, _ = study_modules
    root = tmp_path / "demo"
    outcome = run_study(good, root / "good", progress=False)
    summary = {"model": "tiny", "num_latents": 2, "n": 4, "accuracy": 0.75, "accuracy_k0": 0.25}
    index = write_index(root, summary, [], [outcome])
    dom, console = dump_dom(index)
    assert console == []
    assert "n was 3" in dom and "A good study" in dom and "75.0%" in dom
    png = tmp_path / "index.png"
    assert screenshot(index, png) == []
    pixels = matplotlib.image.imread(png)
    assert pixels.std() > 0.01  # not a blank page


def test_study_main_is_the_config_as_a_command_line(tmp_path, capsys):
    from dataclasses import dataclass

    from nnsight_codi.studies import study_main

    @dataclass
    class Config:
        model: str = "tiny"
        limit: int = 3

    def run(config, out):
        if config.model == "missing":
            raise FileNotFoundError("model missing: no such file or directory")
        Path(out).mkdir(parents=True, exist_ok=True)
        return {"headline": [f"{config.model} on {config.limit}"]}

    assert study_main(Config, run, str(tmp_path / "a"), argv=["--limit", "7"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "tiny on 7"
    assert study_main(Config, run, str(tmp_path / "a"), argv=["--json", "--out", str(tmp_path / "b")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["headline"] == ["tiny on 3"] and printed["results"] == str(tmp_path / "b" / "results.json")
    assert study_main(Config, run, str(tmp_path / "a"), argv=["--model", "missing"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model missing" in err and "Traceback" not in err
