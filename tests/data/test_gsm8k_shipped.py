"""GSM8K shipped with the package: the files, their licence and checksums, and the `gsm8k` specs."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

from nnsight_codi.data import gsm8k, network
from nnsight_codi.data.eval_datasets import DatasetError, load_eval_dataset
from nnsight_codi.data.scoring import extract_gold

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "gsm8k_test_head20.jsonl"
TRAIN_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "gsm8k_train_head600.jsonl"


def test_shipped_files_match_their_recorded_checksums_and_licence():
    readme = (gsm8k.GSM8K_DIR / "README.md").read_text()
    for split, lines in (("test", 1319), ("train", 7473)):
        raw = gzip.decompress(gsm8k.shipped_file(split).read_bytes())
        assert raw.count(b"\n") == lines
        row = re.search(rf"`{split}\.jsonl\.gz` \| ([\d,]+) \| `([0-9a-f]{{64}})`", readme)
        assert row and int(row.group(1).replace(",", "")) == lines
        assert hashlib.sha256(raw).hexdigest() == row.group(2)
    licence = (gsm8k.GSM8K_DIR / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "OpenAI" in licence


def test_shipped_rows_equal_the_fixture_heads_and_every_gold_parses():
    test, train = gsm8k.read_shipped("test"), gsm8k.read_shipped("train")
    assert test[:20] == [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    assert train[:600] == [json.loads(line) for line in TRAIN_FIXTURE.read_text().splitlines()]
    golds = [extract_gold(r["answer"]) for r in test]
    assert all(g == g and abs(g) != float("inf") for g in golds) and golds[:3] == [18.0, 3.0, 70000.0]
    with pytest.raises(ValueError, match="not shipped"):
        gsm8k.shipped_file("validation")


def test_gsm8k_offline_reads_the_shipped_copy_fast(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for spec in ("gsm8k", "gsm8k:shipped"):
        ds = load_eval_dataset(spec, limit=4)
        assert list(ds["id"]) == ["gsm8k-0", "gsm8k-1", "gsm8k-2", "gsm8k-3"]
        assert ds["question"][0].startswith("Janet") and extract_gold(ds["answer"][1]) == 3.0
    assert len(load_eval_dataset("gsm8k:shipped", split="train")) == 7473
    with pytest.raises(DatasetError, match="gsm8k:hub: the Hub cannot be reached .*HF_(DATASETS|HUB)_OFFLINE"):
        load_eval_dataset("gsm8k:hub")


def test_unreachable_hub_is_decided_in_about_a_second(monkeypatch):
    import time

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.perf_counter()
    reason = network.offline_reason(cache=False)
    assert reason is not None and "127.0.0.1:9 is unreachable" in reason
    assert time.perf_counter() - start < 3


def test_lm_eval_gsm8k_task_defaults_to_the_shipped_test_split():
    from nnsight_codi.harness.tasks import default_gsm8k_file, gsm8k_local_dataset

    assert default_gsm8k_file() == gsm8k.shipped_file("test")
    docs = gsm8k_local_dataset()["test"]
    assert len(docs) == 1319 and docs[0]["question"].startswith("Janet")
