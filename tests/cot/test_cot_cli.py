"""`nnsight-codi cot-vectors extract|sweep|eval` on a tiny chat model saved in the test."""

from __future__ import annotations

import json

import cot_testlib as lib
import pytest

from nnsight_codi.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return lib.save_chat_lm(tmp_path_factory.mktemp("chat") / "lm")


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_extract_sweep_eval(model_dir, tmp_path, capsys):
    store, grid = tmp_path / "v.zarr", tmp_path / "grid.jsonl"
    common = ["--model", str(model_dir), "--max-new-tokens", "4", "--json"]
    assert main(["cot-vectors", "extract", *common, "--limit", "4", "--batch-size", "2", "--out", str(store)]) == 0
    out = _json(capsys)
    assert out["examples"] == 4 and len(out["vector_norms"]) == 3
    assert main(["cot-vectors", "sweep", *common, "--vectors", str(store), "--limit", "2", "--layers", "1,2",
                 "--coefs", "0.5,2", "--out", str(grid)]) == 0
    out = _json(capsys)
    assert out["cells"] == 8 and set(out["best"]) == {"single", "continuous"}
    for layers in ("1,3", "-1"):  # residual layers 0..L (L = 2 here), checked before the model loads
        bad = tmp_path / f"bad{layers}.jsonl"
        assert main(["cot-vectors", "sweep", *common, "--vectors", str(store), "--limit", "2", "--layers", layers,
                     "--coefs", "1", "--out", str(bad)]) == 2
        assert "out of range" in capsys.readouterr().err and not bad.exists()
    for cond in ("direct", "cot", "single:1:2", "continuous:2:0.5"):
        assert main(["cot-vectors", "eval", *common, "--vectors", str(store), "--condition", cond, "--limit", "3"]) == 0
        out = _json(capsys)
        assert {"accuracy", "n", "reasoning_rate", "ci_low", "ci_high"} <= set(out) and out["n"] == 3
    # --out: each prediction carries its question, gold answer and the number read from the output
    import json

    from nnsight_codi.cot import load_questions
    from nnsight_codi.data.scoring import extract_gold, extract_prediction

    assert main(["cot-vectors", "eval", *common, "--condition", "cot", "--limit", "3", "--out", str(tmp_path / "p")]) == 0
    _json(capsys)
    rows = [json.loads(line) for line in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    data = load_questions("synthetic", split="test", limit=3)
    assert [r["question"] for r in rows] == list(data["question"])
    assert [r["gold"] for r in rows] == [extract_gold(a) for a in data["answer"]]
    for r in rows:
        pred = extract_prediction(r["prediction_text"])
        assert r["prediction"] == (pred if pred != float("inf") else None)
        assert r["correct"] == (r["prediction"] == r["gold"]) and isinstance(r["writes_chain"], bool)


@pytest.mark.parametrize("args, message", [
    (["--condition", "sideways:1:2"], "unknown schedule"),
    (["--condition", "single:1:2"], "needs --vectors"),
    (["--condition", "single:9:2", "--vectors", "{store}"], "out of range"),
    (["--condition", "direct", "--vectors", "missing.zarr"], "not found"),
])
def test_bad_input_is_one_line(model_dir, tmp_path, capsys, args, message):
    store = tmp_path / "v.zarr"
    if "{store}" in args:
        assert main(["cot-vectors", "extract", "--model", str(model_dir), "--limit", "2", "--max-new-tokens", "2",
                     "--out", str(store), "--json"]) == 0
        capsys.readouterr()
    args = [a.replace("{store}", str(store)) for a in args]
    assert main(["cot-vectors", "eval", "--model", str(model_dir), "--limit", "2", "--json", *args]) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(errors) == 1 and message in errors[0]
