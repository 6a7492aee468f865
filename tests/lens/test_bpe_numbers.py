"""Number read-outs under BPE tokenizers (GPT-2-like byte-level, Llama-3-like digit chunks,
trained in the test on GSM8K text): a value shows as its whole spelling or its first token.

Hand-made read-outs: values ≥ 1000 (split by both tokenizers), leading-space tokens, near misses,
operands, the chance baseline and settling, scored by `analyses.lens_study`; the expected token
ids come from the tokenizer directly. The word-level tiny tokenizer gives the whole-token rule's
results exactly."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from bpe_tokenizers import byte_level_bpe, digit_chunked_bpe

from analyses.lens_study import detection, settling
from nnsight_codi.lens.numbers import NumberTokens, hits_ids, tokenizer_encoder, value_text
from nnsight_codi.lens.values import hits, target_sets, token_values
from nnsight_codi.tokenization import build_word_tokenizer

TOKENIZERS = {"byte_level": byte_level_bpe, "digit_chunked": digit_chunked_bpe}


def _vocab(tok) -> list[str]:
    return [tok.decode([i]) for i in range(len(tok))]


def _first(tok, text: str) -> int:
    """The first non-space token the tokenizer writes for `text` (independent of the library)."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return next(i for i in ids if tok.decode([i]).strip())


def _pieces(tok, text: str) -> list[str]:
    return [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_shown_ids_are_whole_spellings_and_first_tokens(name):
    tok = TOKENIZERS[name]()
    vocab = _vocab(tok)
    reader = NumberTokens(vocab, tokenizer_encoder(tok))
    whole_only = NumberTokens(vocab)
    split = []
    for v in (1234, 4500, 12345, 1000000, 2468, 617, 360, 52, 7):
        text = str(v)
        expected = {i for i, s in enumerate(vocab) if s.strip() == text}           # spelled whole
        for written in (text, " " + text):
            first = _first(tok, written)
            if text.startswith(vocab[first].strip()):
                expected.add(first)
        assert reader.ids(float(v)) == expected, (v, _pieces(tok, " " + text))
        assert whole_only.ids(float(v)) == {i for i, s in enumerate(vocab) if s.strip() == text}
        if len(_pieces(tok, text)) > 1:
            split.append(v)
            assert reader.ids(float(v)) and not whole_only.ids(float(v)) - reader.ids(float(v))
    assert {1234, 12345, 1000000} <= set(split)          # both tokenizers split values ≥ 1000
    assert value_text(1234.0) == "1234" and value_text(2.5) is None and value_text(float("nan")) is None


def _dataset(tok, names: list[str]) -> xr.Dataset:
    return xr.Dataset({"token_string": (("token_id",), np.asarray(_vocab(tok), dtype=object)),
                       "tokenizer_json": (("tokenizer",), np.asarray([tok.backend_tokenizer.to_str()], dtype=object))},
                      coords={"step": np.arange(len(names)), "step_name": ("step", names), "layer": [0, 1]})


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_detection_of_split_values_on_hand_made_readouts(name):
    tok = TOKENIZERS[name]()
    word = next(i for i, s in enumerate(_vocab(tok)) if s == " the")           # a non-number read-out
    truth = [{"id": "a", "answer": 1234.0, "intermediates": [617.0, 1234.0], "operands": [2.0, 617.0, 9.0]},
             {"id": "b", "answer": 52.0, "intermediates": [48.0, 52.0], "operands": [4.0, 12.0]}]
    ans_a, ans_a_nospace = _first(tok, " 1234"), _first(tok, "1234")
    near_a = _first(tok, " 2468")                                              # 2 × answer: a near miss
    assert tok.decode([ans_a]).strip() != "1234" and tok.decode([near_a]).strip() != tok.decode([ans_a]).strip()
    ans_b = _first(tok, " 52")                                                 # leading-space token
    op_b = _first(tok, " 12")
    names = ["bot", "latent1", "latent2", "eot"]
    ids = np.full((2, 4, 2, 3), word)
    ids[0, 1, 1, 0] = ans_a                  # step 1: 1234 (split) top-1
    ids[1, 1, 1, 2] = ans_b                  #         52 third
    ids[0, 2, 1, 1] = near_a                 # step 2: a near miss of 1234, second
    ids[1, 2, 1, 0] = op_b                   #         an operand of problem b, top-1
    ids[1, 3, 0, 0] = ans_a_nospace          # eot, layer 0: problem b shows problem a's answer (chance)
    ids[0, 3, 0, 1] = _first(tok, "52")      #               and a shows b's (no leading space)
    ds = _dataset(tok, names)
    rows = {(r["step_name"], r["layer"], r["k"], r["target"]): r for r in detection({"logit": (ids, None, None, ds)}, truth)}

    def rate(step, layer, k, target, key="rate"):
        return rows[(step, layer, k, target)][key]

    assert rate("latent1", 1, 1, "answer") == 0.5 and rate("latent1", 1, 3, "answer") == 1.0
    assert rate("latent2", 1, 1, "near_miss") == 0.0 and rate("latent2", 1, 3, "near_miss") == 0.5
    assert rate("latent2", 1, 3, "answer") == 0.0 and rate("latent2", 1, 1, "operand") == 0.5
    assert rate("eot", 0, 3, "answer") == 0.0 and rate("eot", 0, 3, "answer", "chance") == 1.0
    assert rate("bot", 1, 3, "intermediate") == 0.0
    # the whole-token rule never sees the split answer (what detection did before)
    v = token_values(_vocab(tok))[ids]
    assert not hits(v, [{1234.0}, {52.0}], 3)[0, 1, 1]
    # no tokenizer in the store: whole spellings only (" 52" still counts, the split 1234 does not)
    bare = ds.drop_vars("tokenizer_json")
    rows = {(r["step_name"], r["layer"], r["k"], r["target"]): r for r in detection({"logit": (ids, None, None, bare)}, truth)}
    assert rows[("latent1", 1, 3, "answer")]["rate"] == 0.5


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_settling_on_split_values(name):
    tok = TOKENIZERS[name]()
    word = next(i for i, s in enumerate(_vocab(tok)) if s == " the")
    truth = [{"id": "a", "answer": 1234.0, "intermediates": [617.0, 1234.0], "operands": [2.0, 617.0]},
             {"id": "b", "answer": 2000.0, "intermediates": [1000.0, 2000.0], "operands": [2.0, 1000.0]}]
    ids = np.full((2, 4, 2, 1), word)
    ids[0, 1:3, :, 0] = _first(tok, " 1234")          # settles on the answer's first token at latent1
    ids[1, 2, :, 0] = _first(tok, " 1000")            # 1000 × 2 = 2000: one operation away
    rows = settling({"logit": (ids, None, None, _dataset(tok, ["bot", "latent1", "latent2", "eot"]))}, truth)
    assert len(rows) == 2
    for r in rows:
        assert r["settled_is_answer"] == 0.5
        if _first(tok, " 1000") in NumberTokens(_vocab(tok), tokenizer_encoder(tok)).ids(2000.0):
            continue                                  # 1000 and 2000 begin alike: nothing to tell apart
        # b: 2000 = 1000 × 2; a: the answer's first token also begins 1234 ± 2 (answer ∓ an operand),
        # as a first-token rule must count it: the chance column is what such a rate is read against
        assert r["one_op_from_answer"] == 1.0 and 0.0 <= r["one_op_chance"] <= 1.0


def test_word_level_tokenizer_equals_the_whole_token_rule():
    tok = build_word_tokenizer(max_number=999)
    vocab = _vocab(tok)
    with_tok, whole = NumberTokens(vocab, tokenizer_encoder(tok)), NumberTokens(vocab)
    values = [float(v) for v in range(0, 2500)] + [2.5, 0.5, -3.0, 1e6]
    assert all(with_tok.ids(v) == whole.ids(v) for v in values)
    assert with_tok.ids(1234.0) == frozenset() and len(with_tok.ids(999.0)) == 1
    # and the token-id sets score like the old value sets on random read-outs
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(vocab), size=(40, 3, 2, 5))
    truth = [{"answer": float(a), "intermediates": [float(b), float(a)], "operands": [float(c), 3.0]}
             for a, b, c in rng.integers(0, 300, size=(40, 3))]
    for target in ("answer", "intermediate", "near_miss", "operand"):
        value_sets = [target_sets(t)[target] for t in truth]
        id_sets = [with_tok.target_ids(target_sets(t))[target] for t in truth]
        np.testing.assert_array_equal(hits_ids(ids, id_sets, 5), hits(token_values(vocab)[ids], value_sets, 5))


def test_lens_captures_carry_the_tokenizer_and_the_analysis_uses_it(study_dir, tiny):
    """A capture with lens read-outs stores the model's tokenizer; the analysis reads numbers with it,
    and for the tiny word-level tokenizer every table equals the whole-spelling one (the rule
    before BPE support)."""
    from analyses.lens_study import analyse, detection, find_inputs, lens_readouts, load_truth, odd_even, settling
    from nnsight_codi.lens.numbers import store_tokenizer
    from nnsight_codi.store import open_store

    inputs = find_inputs(study_dir)
    stores = {name: open_store(p) for name, p in inputs["stores"].items()}
    assert store_tokenizer(stores["logit"]) == tiny.tokenizer.backend_tokenizer.to_str()
    truth = load_truth(inputs["truth"], stores["logit"])
    readouts = lens_readouts(stores)
    bare = {name: (*r[:3], r[3].drop_vars("tokenizer_json")) for name, r in readouts.items()}
    assert all("tokenizer_json" in r[3] for r in readouts.values())
    assert detection(readouts, truth) == detection(bare, truth)
    assert odd_even(readouts, truth) == odd_even(bare, truth)
    assert settling(readouts, truth) == settling(bare, truth)
    assert analyse(study_dir, probes=False)["number_rule"] == "whole token or first token"
    path = study_dir / "tokenizer.json"
    path.write_text(store_tokenizer(stores["logit"]))
    assert analyse(study_dir, probes=False, tokenizer=str(path))["number_rule"] == "whole token or first token"


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_attention_number_kinds_under_bpe(name):
    """The attention study's number kinds are per piece (`is_number_token`) and its spans join a
    split number's pieces, so prompt numbers ≥ 1000 are found under both BPE schemes."""
    from nnsight_codi.store.positions import number_spans, source_labels

    tok = TOKENIZERS[name]()
    question = "Tom sold 1234 pens at 52 each and 12345678 more"
    pieces = _pieces(tok, question)
    assert len(pieces) > len(question.split())                      # numbers were split
    tokens, kinds = source_labels(pieces, None)
    assert [v for _, v in number_spans(tokens, kinds)] == [1234.0, 52.0, 12345678.0]
