"""Runs facebookresearch/coconut's own `Coconut.generate` (batch size 1, as it asserts) on a checkpoint in its
layout and prints the answer ids and the time spent in `generate` as JSON. Run by `bench_coconut.py` in the
reference's own environment (its pinned torch / transformers): nothing of the reference is in this repository;
`--reference-src` points at a checkout of it (facebookresearch/coconut@27273cb).

    python coconut_reference_driver.py SRC FABRICATED_DIR QUESTIONS_JSON NUM_LATENTS MAX_NEW_TOKENS
"""

import json
import sys
import time


def main(src: str, fab: str, questions: list[str], k: int, max_new: int) -> dict:
    """Load the checkpoint as the reference's run.py does (tokens added, wrapper, state dict) and generate."""
    sys.path.insert(0, src)
    import torch
    from coconut import Coconut  # the reference's module, from its own checkout
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(f"{fab}/base")
    tokenizer.pad_token = tokenizer.eos_token
    for token in ("<|start-latent|>", "<|end-latent|>", "<|latent|>"):
        tokenizer.add_tokens(token)
    start, end, latent = tokenizer.convert_tokens_to_ids(["<|start-latent|>", "<|end-latent|>", "<|latent|>"])
    config = AutoConfig.from_pretrained(f"{fab}/base")
    config.vocab_size = len(tokenizer)
    model = Coconut(AutoModelForCausalLM.from_config(config), latent, start, end, tokenizer.eos_token_id)
    info = model.load_state_dict(torch.load(f"{fab}/checkpoint_1", map_location="cpu"), strict=False)
    assert not info.missing_keys and not info.unexpected_keys, info
    model.eval()
    answers, seconds = [], 0.0
    torch.set_num_threads(1)
    for q in questions:
        ids = tokenizer.encode(q + "\n", add_special_tokens=True) + [start] + [latent] * k + [end]
        x = torch.tensor(ids).unsqueeze(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(x, torch.ones_like(x), max_new_tokens=max_new)
        seconds += time.perf_counter() - t0
        answers.append(out[0].tolist()[len(ids):])
    return {"answers": answers, "seconds": seconds, "torch": torch.__version__}


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    print(json.dumps(result))
