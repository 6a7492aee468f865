"""The word-level tokenizer: one token per number, specials at the end, save/load round trip."""

from nnsight_codi.data.synthetic import generate_problems
from nnsight_codi.tokenization import build_word_tokenizer, load_word_tokenizer, special_ids


def test_numbers_are_single_tokens():
    tok = build_word_tokenizer(max_number=999)
    for n in (0, 7, 42, 99, 500, 999):
        ids = tok(str(n), add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == str(n)
    assert tok.convert_ids_to_tokens(tok("1000")["input_ids"]) == ["<unk>"]


def test_specials_are_last_three():
    tok = build_word_tokenizer()
    ids = special_ids(tok)
    V = len(tok) - 3
    assert (ids["pad_id"], ids["bot_id"], ids["eot_id"]) == (V, V + 1, V + 2)
    assert ids["eos_id"] == tok.eos_token_id and ids["eos_id"] < V
    assert tok.pad_token_id == V


def test_unknown_and_cot_styles():
    tok = build_word_tokenizer()
    toks = tok.convert_ids_to_tokens(tok("Tom has 5 zebras .")["input_ids"])
    assert toks == ["Tom", "has", "5", "<unk>", "."]
    assert tok("<<4*6=24>> <<24-3=21>>")["input_ids"] == tok("<< 4 * 6 = 24 >> << 24 - 3 = 21 >>")["input_ids"]


def test_no_unknowns_in_synthetic_problems():
    tok = build_word_tokenizer()
    ds = generate_problems(300, seed=1, value_range=(0, 199))
    for text in list(ds["question"]) + list(ds["cot"]):
        assert tok.unk_token_id not in tok(text)["input_ids"], text
    assert tok.unk_token_id not in tok("The answer is : 42")["input_ids"]


def test_save_load_roundtrip(tmp_path):
    tok = build_word_tokenizer()
    tok.save_pretrained(tmp_path)
    back = load_word_tokenizer(tmp_path)
    text = "Mia has 3 boxes with 7 pens each . How many are left ? << 3 * 7 = 21 >>"
    assert back(text)["input_ids"] == tok(text)["input_ids"]
    assert special_ids(back) == special_ids(tok)
    assert back.decode(back(text)["input_ids"]) == text


def test_missing_dir(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError):
        load_word_tokenizer(tmp_path / "nope")
