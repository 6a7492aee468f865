"""The shipped tiny instruct LM: loads offline as a plain HF causal LM, has a chat template that
round-trips, one token per number, and follows both instructions on unseen problems."""

import pytest

from nnsight_codi.instruct import (
    COT_INSTRUCTION,
    DIRECT_INSTRUCTION,
    contains_chain,
    evaluate_instruct,
    generate_chat,
    instruct_prompt,
    score_outputs,
)
from nnsight_codi.loading import load_model
from nnsight_codi.models.model_sources import TINY_INSTRUCT_DIR

pytestmark = pytest.mark.skipif(not (TINY_INSTRUCT_DIR / "model.safetensors").is_file(),
                                reason="tiny-instruct not shipped")


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-instruct")


@pytest.fixture(scope="module")
def heldout():
    import json

    from nnsight_codi.training.instruct_training import InstructConfig
    from nnsight_codi.training.report import unseen_problems

    meta = json.loads((TINY_INSTRUCT_DIR / "instruct.json").read_text())
    o = meta["synthetic_options"]
    cfg = InstructConfig(seed=meta["train_seed"], test_seed=meta["test_seed"], min_steps=o["min_steps"],
                         max_steps=o["max_steps"], value_max=o["value_range"][1], add_max=o["add_range"][1],
                         mul_max=o["mul_range"][1], ops=o["ops"])
    # seed test_seed + 2: used neither in training nor in TRAINING.md's held-out numbers
    cfg.test_seed += 1
    return unseen_problems(cfg, 96)


def test_loads_offline_as_a_plain_lm(model):
    from nnsight import TransformersModel

    assert isinstance(model, TransformersModel)
    assert model._module.config.model_type == "gpt2"
    assert model.tokenizer.padding_side == "left"


def test_chat_template_round_trips(model):
    tok = model.tokenizer
    q = "Tom has 3 pens . He gets 4 more . How many pens does Tom have now ?"
    user = f"{q} {COT_INSTRUCTION}"
    prompt = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    assert prompt == instruct_prompt(tok, q, "cot")
    full = tok.apply_chat_template([{"role": "user", "content": user},
                                    {"role": "assistant", "content": "<< 3 + 4 = 7 >> The answer is : 7"}],
                                   tokenize=False)
    ids = tok(full, add_special_tokens=False)["input_ids"]
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids[: len(p_ids)] == p_ids  # the generation prompt is a prefix of the conversation
    assert tok.unk_token_id not in ids  # every word of question, instruction and reply is in the vocabulary
    assert tok.decode(ids[len(p_ids):], skip_special_tokens=True) == "<< 3 + 4 = 7 >> The answer is : 7"
    assert tok.decode(p_ids, skip_special_tokens=True) == user.replace("step.", "step .")
    # tokenize=True gives the same ids as tokenizing the rendered text
    direct = tok.apply_chat_template([{"role": "user", "content": f"{q} {DIRECT_INSTRUCTION}"}],
                                     add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(direct) == tok(instruct_prompt(tok, q, "direct"), add_special_tokens=False)["input_ids"]


def test_numbers_are_single_tokens(model):
    tok = model.tokenizer
    for n in (0, 7, 42, 99, 250, 999):
        ids = tok(str(n), add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] != tok.unk_token_id
        assert tok.decode(ids) == str(n)


def test_batched_generation_matches_one_at_a_time(model, heldout):
    tok = model.tokenizer
    prompts = [instruct_prompt(tok, q, m) for q in heldout["question"][:4] for m in ("cot", "direct")]
    batched = generate_chat(model, tok, prompts, max_new_tokens=40)
    single = [generate_chat(model, tok, [p], max_new_tokens=40)[0] for p in prompts]
    assert batched == single


def test_follows_both_instructions(model, heldout):
    tok = model.tokenizer
    cot = evaluate_instruct(model, tok, heldout, "cot")
    direct = evaluate_instruct(model, tok, heldout, "direct")
    # the spec's rules (>= 95% correct and with a chain / <= 5% chains / a gap >= 30 points) with a
    # margin for 96 problems; on 1,000 the shipped model has 99.5% / 100% / 0% / 39 points (TRAINING.md)
    assert cot.accuracy >= 0.9 and cot.chain_rate >= 0.9
    assert direct.chain_rate <= 0.1
    assert cot.accuracy - direct.accuracy >= 0.25
    # the scores agree with an independent reading of the texts
    rescored = score_outputs(cot.texts, heldout["answer"])
    assert rescored.accuracy == cot.accuracy
    assert sum(t.rsplit(":", 1)[-1].strip() == str(a) for t, a in zip(cot.texts, heldout["answer"])) / len(
        heldout) == pytest.approx(cot.accuracy, abs=0.03)
    assert all(contains_chain(t) == ("<<" in t and ">>" in t) for t in cot.texts + direct.texts)


def test_heldout_paraphrases_and_no_instruction_behave_like_the_trained_ones(model, heldout):
    """The mode is read from what an instruction says, not from two memorised strings: paraphrases
    never trained on (recorded in instruct.json) switch it the same way, and the question alone is
    answered directly (as trained)."""
    import json

    from nnsight_codi.training.report import paraphrase_families

    tok = model.tokenizer
    meta = json.loads((TINY_INSTRUCT_DIR / "instruct.json").read_text())
    fams = paraphrase_families(meta)
    assert set(fams) == {"cot_trained", "direct_trained", "cot_heldout", "direct_heldout", "none"}
    trained = set(fams["cot_trained"][1]) | set(fams["direct_trained"][1])
    assert not trained & (set(fams["cot_heldout"][1]) | set(fams["direct_heldout"][1]))
    questions, answers = list(heldout["question"]), list(heldout["answer"])

    def run(texts):
        prompts = [instruct_prompt(tok, q, "cot", {"cot": texts[i % len(texts)]}) if texts[i % len(texts)]
                   else instruct_prompt(tok, q, "none") for i, q in enumerate(questions)]
        assert all(tok.unk_token_id not in tok(p, add_special_tokens=False)["input_ids"] for p in prompts)
        return score_outputs(generate_chat(model, tok, prompts, max_new_tokens=48), answers)

    cot, direct, none = run(fams["cot_heldout"][1]), run(fams["direct_heldout"][1]), run([""])

    def behaving(result, texts, chain):  # held-out instructions whose outputs mostly follow their mode
        per = [[result.chains[i] for i in range(result.n) if i % len(texts) == j] for j in range(len(texts))]
        return sum((sum(c) / len(c) >= 0.8) if chain else (sum(c) / len(c) <= 0.2) for c in per)

    # TRAINING.md (1,000 problems per family): 11 of the 12 held-out paraphrases follow their mode;
    # one negated one does not ("Do not answer directly , show your work ." → answered directly;
    # v2 also misread "Just the final number , no reasoning ." which v3 answers directly)
    assert behaving(cot, fams["cot_heldout"][1], True) >= 5
    assert behaving(direct, fams["direct_heldout"][1], False) == 6
    assert cot.chain_rate >= 0.75 and cot.accuracy >= 0.8
    assert direct.chain_rate <= 0.3 and cot.accuracy - direct.accuracy >= 0.15
    assert fams["none"][0] == "direct" and none.chain_rate <= 0.1


def test_a_chain_begun_against_the_direct_instruction_is_finished(model, heldout):
    """v3's training choice (`carry_fraction`): the reply keeps the mode its first token chose. A
    reply begun with `<<` under the direct instruction goes on to the CoT prompt's own chain and
    answer; one begun with "The" under the CoT instruction answers without a chain."""
    from nnsight_codi.instruct import chain_steps

    tok = model.tokenizer
    questions, answers = list(heldout["question"]), list(heldout["answer"])
    cot = generate_chat(model, tok, [instruct_prompt(tok, q, "cot") for q in questions], max_new_tokens=48)
    begun = generate_chat(model, tok, [instruct_prompt(tok, q, "direct") + " <<" for q in questions],
                          max_new_tokens=48)
    carried = score_outputs([f"<< {t}" for t in begun], answers)
    # TRAINING.md (1,000 problems): 97.5% correct, every output a chain as long as the CoT prompt's
    assert carried.chain_rate == 1.0 and carried.accuracy >= 0.9
    assert sum(f"<< {t}" == c for t, c in zip(begun, cot)) / len(cot) >= 0.85  # token for token the CoT reply
    assert sum(chain_steps(f"<< {t}") for t in begun) == pytest.approx(sum(chain_steps(c) for c in cot), rel=0.05)
    answered = generate_chat(model, tok, [instruct_prompt(tok, q, "cot") + " The" for q in questions],
                             max_new_tokens=48)
    assert not any(contains_chain(t) for t in answered)


def test_earlier_models_load_by_name_and_each_starts_from_the_one_before():
    import json

    from safetensors.torch import load_file

    from nnsight_codi.models.model_sources import SHIPPED_INSTRUCT

    weights = {}
    for name, directory in SHIPPED_INSTRUCT.items():
        lm = load_model(name)
        assert lm._module.config.n_layer == 4 and lm.tokenizer.chat_template
        assert lm._module.config.name_or_path == str(directory)
        weights[name] = load_file(directory / "model.safetensors")["transformer.wte.weight"]
    assert len({tuple(w.shape) for w in weights.values()}) == 2  # v2 appended the paraphrases' words; v3 none
    assert not any(w.shape == weights["tiny-instruct"].shape and w.equal(weights["tiny-instruct"])
                   for n, w in weights.items() if n != "tiny-instruct")
    v3 = json.loads((SHIPPED_INSTRUCT["tiny-instruct"] / "instruct.json").read_text())
    v2 = json.loads((SHIPPED_INSTRUCT["tiny-instruct-v2"] / "instruct.json").read_text())
    assert (v3["init_from"], v2["init_from"]) == ("tiny-instruct-v2", "tiny-instruct-v1")
    assert v3["carry_fraction"] == 0.25 and "carry_fraction" not in v2
