"""The latent dashboard: page data equal the store; the page renders in headless Chromium without
console errors, is not blank, and shows the store's top-attended and logit-lens tokens for a selected
step (read back from the rendered DOM); stores without attention / lens / tokens give a page that
says what is missing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from dashboard_stores import LAYERS, VOCAB, make_store

from nnsight_codi.cli import main
from nnsight_codi.dashboard import MISSING, best_layer, page_data, write_dashboard
from nnsight_codi.dashboard.browser import dump_dom, find_chromium, read_page, screenshot
from nnsight_codi.store import open_store

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    store = make_store(root / "s.zarr")
    return open_store(store), write_dashboard(store, root / "dash", top_k=4)


def expected_top(ds, i: int, s: int, k: int) -> list[tuple[int, float, str]]:
    """The test's own top-k: sort the stored row by hand."""
    row = ds["attention"][i, s].values.astype(np.float64)
    visible = [(float(w), p) for p, w in enumerate(row) if np.isfinite(w)]
    visible.sort(key=lambda t: (-t[0], t[1]))
    tokens = [str(t) for t in ds["source_token"][i].values]
    return [(p, w, tokens[p]) for w, p in visible[:k]]


def test_default_layer_is_where_the_latents_read_out_numbers_most_often(full):
    ds, info = full
    latents = [i for i, n in enumerate(ds["step_name"].values) if str(n).startswith("latent")]
    rates = []
    for l in LAYERS:  # by hand: the share of latent-step top-1 tokens that are numbers (" 42" in VOCAB)
        ids = ds["lens_top_ids"].sel(layer=l).values[:, latents, 0].ravel()
        rates.append(np.mean([VOCAB[i].strip().isdigit() for i in ids]))
    assert max(rates) > 0
    assert info["layer"] == best_layer(ds) == LAYERS[int(np.argmax(rates))]
    # a store whose read-outs hold no number falls back to the highest mean top-1 probability
    plain = ds.assign(token_string=ds["token_string"].where(ds["token_string"] != " 42", "w"))
    means = [float(np.nanmean(ds["lens_top_probs"].sel(layer=l, k=0).values)) for l in LAYERS]
    assert best_layer(plain) == LAYERS[int(np.argmax(means))]


def test_page_data_equal_the_store(full):
    ds, _ = full
    data = page_data(ds, top_k=4)
    strings = data["strings"]
    for i, ex in enumerate(data["examples"]):
        assert ex["id"] == str(ds["example"].values[i])
        n = int(ds["prompt_length"][i]) + len(data["steps"]) - 1
        assert [strings[t] for t in ex["t"]] == [str(t) for t in ds["source_token"][i].values[:n]]
        for s in range(len(data["steps"])):
            want = expected_top(ds, i, s, 4)
            assert ex["a"][s][0] == [p for p, _, _ in want]
            np.testing.assert_allclose(np.array(ex["a"][s][1]) / data["scale"], [w for _, w, _ in want], atol=1e-4)
            for li in range(len(LAYERS)):
                ids = ds["lens_top_ids"][i, s, li].values
                assert [strings[t] for t in ex["l"][s][li][0]] == [VOCAB[j] for j in ids]
        gold, pred = float(ds["answer_gold"][i]), float(ds["answer_pred"][i])
        assert ex["g"] == gold and (ex["p"] is None if np.isnan(pred) else ex["p"] == pred)
        assert ex["c"] == int(ds["correct"][i])


def test_page_is_self_contained(full):
    _, info = full
    html = open(info["path"], encoding="utf-8").read()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no network, no CDN
    assert "<link" not in html and "@import" not in html
    # the hostile question ends no script early: exactly the page's own closing tags remain
    assert html.count("</script>") == 3
    assert info["bytes"] == len(html.encode("utf-8"))


@needs_chromium
@pytest.mark.parametrize("example,step,layer", [("ex-1", 2, None), ("ex-4", 4, 0)])
def test_rendered_step_shows_the_stores_values(full, example, step, layer):
    ds, info = full
    dom, console = dump_dom(info["path"], example=example, step=step, layer=layer)
    assert console == []
    page = read_page(dom)
    assert page["errors"] is None and page["missing"] == []
    assert page["body"]["data-ready"] == "1"
    assert page["body"]["data-example"] == example and page["body"]["data-step"] == str(step)
    i = list(ds["example"].values).index(example)
    want = expected_top(ds, i, step, 4)
    shown = [(int(a["data-pos"]), float(a["data-weight"]), a["data-token"]) for a in page["attended"]]
    assert [(p, t) for p, _, t in shown] == [(p, t) for p, _, t in want]
    np.testing.assert_allclose([w for _, w, _ in shown], [w for _, w, _ in want], atol=1e-4)
    highlighted = sorted(int(t["data-pos"]) for t in page["tokens"] if "attended" in t.get("class", ""))
    assert highlighted == sorted(p for p, _, _ in want)
    li = LAYERS.index(info["layer"] if layer is None else layer)
    ids = ds["lens_top_ids"][i, step, li].values
    probs = ds["lens_top_probs"][i, step, li].values
    assert [x["data-token"] for x in page["lens"]] == [VOCAB[j] for j in ids]
    np.testing.assert_allclose([float(x["data-prob"]) for x in page["lens"]], probs, atol=1e-4)
    card = [c for c in page["steps"] if "selected" in c.get("class", "")]
    assert [c["data-step"] for c in card] == [str(step)]


@needs_chromium
def test_screenshot_is_not_blank(full, tmp_path):
    from PIL import Image

    _, info = full
    png = tmp_path / "page.png"
    assert screenshot(info["path"], png, example="ex-2", step=3) == []
    img = np.asarray(Image.open(png).convert("RGB")).astype(np.float64)
    assert img.shape[:2] == (900, 1400)
    assert img.std() > 10                                     # not one flat colour
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50    # text, highlights, borders
    highlight = (img[..., 0] > 200) & (img[..., 1] > 90) & (img[..., 1] < 200) & (img[..., 2] < 120)
    assert highlight.sum() > 50                               # the orange attention highlights are drawn


@pytest.mark.parametrize("drop", ["attention", "lens", "tokens", "everything"])
def test_missing_parts_are_named_not_a_crash(tmp_path, drop):
    kwargs = {"attention": drop in ("attention", "everything"), "lens": drop in ("lens", "everything"),
              "tokens": drop in ("tokens", "everything")}
    store = make_store(tmp_path / "s.zarr", n=4, **{k: not v for k, v in kwargs.items()},
                       answers=drop != "everything")
    info = write_dashboard(store, tmp_path / "dash")
    wanted = {MISSING[k] for k, v in kwargs.items() if v} | ({MISSING["answers"]} if drop == "everything" else set())
    assert set(info["missing"]) == wanted
    if drop != "everything":  # one browser run covers the page with every part missing
        return
    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    dom, console = dump_dom(info["path"], example="ex-2", step=1)
    page = read_page(dom)
    assert console == [] and page["errors"] is None and page["body"]["data-ready"] == "1"
    assert set(page["missing"]) == wanted


def test_cli_writes_the_page_and_validates(tmp_path, capsys):
    store = make_store(tmp_path / "s.zarr", n=5)
    assert main(["dashboard", str(store), "--out", str(tmp_path / "d"), "--json", "--top-k", "3", "--layer", "0"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["examples"] == 5 and info["layer"] == 0 and (tmp_path / "d" / "index.html").exists()
    assert main(["dashboard", str(tmp_path / "nope"), "--out", str(tmp_path / "d")]) == 2
    assert main(["dashboard", str(store), "--out", str(tmp_path / "d"), "--layer", "7"]) == 2
    assert main(["dashboard", str(store), "--out", str(tmp_path / "d"), "--top-k", "0"]) == 2
    err = capsys.readouterr().err
    assert "no zarr store" in err and "layer 7" in err and "--top-k" in err and "Traceback" not in err
