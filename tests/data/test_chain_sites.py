"""Every reader of the `<<a op b = c>>` chain format gives, on tricky inputs, what it gave before
the readers shared one parser (`nnsight_codi.data.chains`). The expected values in
`fixtures/chain_sites.json` were produced by the six separate regexes this parser replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnsight_codi.cot.prompts import chain_equations, writes_chain
from nnsight_codi.data.rows import cot_steps
from nnsight_codi.data.synthetic import parse_cot
from nnsight_codi.instruct import chain_steps, contains_chain
from nnsight_codi.lens.values import calculator_results

CASES = json.loads((Path(__file__).parent / "fixtures" / "chain_sites.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[repr(c["text"])[:40] for c in CASES])
def test_chain_readers_unchanged(case):
    text = case["text"]
    assert [repr(x) for x in calculator_results(text)] == case["calculator_results"]
    assert cot_steps(text) == case["cot_steps"]
    assert writes_chain(text) == case["writes_chain"]
    assert chain_equations(text) == case["chain_equations"]
    assert [list(x) for x in parse_cot(text)] == case["parse_cot"]
    assert contains_chain(text) == case["contains_chain"]
    assert chain_steps(text) == case["chain_steps"]


@pytest.mark.parametrize("case", CASES, ids=[repr(c["text"])[:40] for c in CASES])
def test_attention_chain_operands_unchanged(case):
    from analyses.attention import chain_operands

    assert chain_operands(case["text"]) == case["chain_operands"]
