"""analyses.attention: role masses, number focus, operand and previous-latent mass against hand counts
on a hand-built store; chain operands; odd vs even; the CLI; the study's run() on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyses.attention import (
    ROLES,
    analyse,
    block_table,
    chain_operands,
    main,
    odd_even,
    readouts,
    role_mass,
    top_attended,
)
from nnsight_codi.store import StoreWriter, open_store
from nnsight_codi.store.positions import source_labels

# position:  0      1     2       3     4    5      6       7    8    9    10
PROMPT = ["Tom", "has", "12", "apples", "and", "3", "pears", "<bot>"]
K = 2


def hand_store(path, cot: str = "<< 12 + 3 = 15 >> << 15 * 2 = 30 >>", blocks: int = 0):
    tokens, kinds = source_labels(PROMPT, K)          # [8 prompt][z1][z2][eot] → 11 positions
    width = len(tokens)
    per_block = np.full((2, K + 2, max(blocks, 1), width), np.nan, dtype=np.float32)
    rng = np.random.default_rng(0)
    for i in range(2):
        for s in range(K + 2):
            visible = len(PROMPT) + s                  # bot at 7: step s's query is 7 + s
            per_block[i, s, :, :visible] = rng.dirichlet(np.ones(visible), size=max(blocks, 1))
    att = per_block.mean(2)
    extra = {"attention_layers": per_block} if blocks else {}
    with StoreWriter(path, variables=["attention", "correct", *extra], chunk=2,
                     coords={"example": ["a", "b"], "question": [" ".join(PROMPT[:-1])] * 2, "cot": [cot] * 2,
                             "step_name": ["bot", "latent1", "latent2", "eot"],
                             "source_token": [tokens] * 2, "source_kind": [kinds] * 2},
                     sizes={"position": width, "block": max(blocks, 1)}, config={"model_id": "hand"}) as w:
        w.write([0, 1], {"attention": att, "correct": np.array([True, False]), **extra,
                         "prompt_length": np.array([8, 8], dtype=np.int32)})
    return open_store(path), (per_block if blocks else att).astype(np.float64)


def test_chain_operands_both_spellings():
    assert chain_operands("<< 4 * 6 = 24 >> << 24 - 3 = 21 >>") == [[4.0, 6.0], [24.0, 3.0]]
    assert chain_operands("She pays <<2*3=6>>6 and <<6+10=16>>16.\n#### 16") == [[2.0, 3.0], [6.0, 10.0]]
    assert chain_operands("no annotations") == []


def test_role_mass_and_readouts_equal_hand_counts(tmp_path):
    ds, att = hand_store(tmp_path / "s.zarr")
    mass = role_mass(ds)
    np.testing.assert_allclose(mass.sum("role").values, 1.0, atol=1e-6)
    number, prompt = [2, 5], [0, 1, 3, 4, 6]
    s = 2  # latent2: query at 9, previous latent z1 at 8, bot at 7
    for i in range(2):
        row = att[i, s]
        want = {"number": row[number].sum(), "prompt": row[prompt].sum(), "bot": row[7],
                "previous latent": row[8], "earlier latents": 0.0, "self": row[9], "eot": 0.0}
        for role, value in want.items():
            assert mass.sel(role=role).values[i, s] == pytest.approx(value, abs=1e-6), role
        # eot step (query 10): z2 is the previous latent, z1 an earlier latent
        assert mass.sel(role="earlier latents").values[i, 3] == pytest.approx(att[i, 3, 8], abs=1e-6)
        assert mass.sel(role="previous latent").values[i, 3] == pytest.approx(att[i, 3, 9], abs=1e-6)
    r = readouts(ds)
    focus = att[:, 1, number].sum(-1) / (att[:, 1, number].sum(-1) + att[:, 1, prompt].sum(-1))
    np.testing.assert_allclose(r["number focus"].values[:, 1], focus, atol=1e-6)
    assert np.isnan(r["previous latent"].values[:, 1]).all()          # latent1 has no previous latent
    np.testing.assert_allclose(r["previous latent"].values[:, 2], att[:, 2, 8], atol=1e-6)
    # latent1 and latent2 belong to chain step 1 (operands 12 and 3: positions 2 and 5)
    np.testing.assert_allclose(r["operand mass"].values[:, 1], att[:, 1, [2, 5]].sum(-1), atol=1e-6)
    np.testing.assert_allclose(r["operand mass"].values[:, 2], att[:, 2, [2, 5]].sum(-1), atol=1e-6)
    diff = odd_even(ds)["number focus"]
    assert diff.value == pytest.approx(float(np.mean(r["number focus"].values[:, 1] - r["number focus"].values[:, 2])))


def test_per_block_readouts(tmp_path):
    ds, per_block = hand_store(tmp_path / "s.zarr", blocks=3)
    whole = role_mass(ds)
    blocks = role_mass(ds, "attention_layers")
    assert blocks.dims == ("example", "step", "block", "role")
    np.testing.assert_allclose(blocks.mean("block").values, whole.values, atol=1e-6)  # mass is linear
    np.testing.assert_allclose(blocks.sel(role="previous latent").values[:, 2], per_block[:, 2, :, 8], atol=1e-6)
    r = readouts(ds, "attention_layers")
    np.testing.assert_allclose(r["operand mass"].values[:, 1], per_block[:, 1][..., [2, 5]].sum(-1), atol=1e-6)
    table = block_table(ds)
    row = table[(table.readout == "number focus") & (table.block == 1) & (table.latent == "odd-even")].iloc[0]
    focus = r["number focus"].values[:, :, 1]
    assert row.value == pytest.approx(float(np.mean(focus[:, 1] - focus[:, 2])))
    with pytest.raises(ValueError, match="attention-detail head"):
        role_mass(ds, "attention_heads")


def test_operands_missing_from_the_prompt_give_nan(tmp_path):
    ds, _ = hand_store(tmp_path / "s.zarr", cot="<< 40 + 1 = 41 >>")
    assert np.isnan(readouts(ds)["operand mass"].values).all()


def test_top_attended_tokens(tmp_path):
    ds, att = hand_store(tmp_path / "s.zarr")
    top = top_attended(ds, k=3)
    for i in range(2):
        for s in range(4):
            order = np.argsort(-np.nan_to_num(att[i, s], nan=-1))[:3]
            assert top["position"].values[i, s].tolist() == order.tolist()
            assert [str(t) for t in top["token"].values[i, s]] == [str(ds["source_token"].values[i, p]) for p in order]


def test_cli_and_figures(tmp_path, capsys):
    hand_store(tmp_path / "s.zarr")
    assert main([str(tmp_path / "s.zarr"), "--out", str(tmp_path / "o"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["roles"] == list(ROLES) and len(result["headline"]) <= 5
    assert (tmp_path / "o" / "figures" / "attention_by_source.png").exists()
    assert (tmp_path / "o" / "figures" / "alternation.png").exists()
    assert main([str(tmp_path / "nope")]) == 2
    assert "no zarr store" in capsys.readouterr().err


def test_store_without_attention_is_refused(tmp_path):
    with StoreWriter(tmp_path / "n.zarr", variables=["correct"], coords={"example": ["a"]},
                     config={"model_id": "x"}) as w:
        w.write([0], {"correct": np.array([True])})
    with pytest.raises(ValueError, match="capture with --what attention"):
        analyse(tmp_path / "n.zarr")


def test_study_run_on_the_tiny_model(tmp_path):
    from runs.attention_study import Config, run

    config = Config(examples=16, batch_size=16, measure_render=False)
    result = run(config, tmp_path / "out", progress=False)
    assert 1 <= len(result["headline"]) <= 5
    for name in ("results.json", "report.md", "figures/alternation.png", "figures/attention_by_source.png",
                 "dashboard/index.html"):
        assert (tmp_path / "out" / name).exists(), name
    ds = open_store(tmp_path / "out" / "attention.zarr")
    assert {"lens_top_ids", "lens_top_probs", "token_string"} <= set(ds.variables)
    assert result["dashboard"]["missing"] == [] and result["dashboard"]["examples"] == 16
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    again = run(config, tmp_path / "out", progress=False)            # the finished store is reused
    assert again["capture"]["written_now"] == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["alternation"] == first["alternation"]
