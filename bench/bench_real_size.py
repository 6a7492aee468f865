"""Real-size check: a CODI-GPT-2-sized reference checkpoint, end to end, on one device.

    python bench/bench_real_size.py [--device cuda] [--n 256] [--json PATH]

Builds (random weights, nothing downloaded) a checkpoint in the reference layout at the size of
zen-E/CODI-gpt2: GPT-2 12×768, vocabulary 50257+3, LoRA r=128 (alpha 32) on c_attn/c_proj/c_fc,
prj 768→768 with LayerNorm; then measures and checks:

- load with LoRA merge (`load_model(file, base=...)`), conversion to a converted directory, and
  loading that directory (seconds);
- the merged weight of one module equals W + alpha/r · (B A)ᵀ computed here independently;
- batched answers == one-at-a-time answers (float32);
- bfloat16 evaluation throughput (questions/s) and capture-to-zarr throughput (hidden, all
  layers + latent_input), store bytes per example, peak device memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from factories import PREFIX, reference_state_dict  # noqa: E402  (the tests' reference-layout writer)


def build_checkpoint(root: Path, rank: int = 128, alpha: float = 32.0, seed: int = 0) -> dict:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from nnsight_codi.data.synthetic import template_words
    from nnsight_codi.models.projection import build_projection

    vocab_size = 50257
    words = ["<unk>", "<eos>", *[str(i) for i in range(1000)], *sorted(set(template_words()) - {"<unk>", "<eos>"})]
    words = list(dict.fromkeys(words))
    words += [f"<f{i}>" for i in range(vocab_size - len(words))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    eos = tokenizer.eos_token_id
    base_dir = root / "base"
    GPT2Config(vocab_size=vocab_size, bos_token_id=eos, eos_token_id=eos).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    torch.manual_seed(seed)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size + 3, bos_token_id=eos, eos_token_id=eos))
    prj = build_projection(768, 768)
    # bf16 base as in the released checkpoints, fp32 LoRA and prj
    state, lora = reference_state_dict(lm, prj, "gpt2", rank, lora_std=0.02, base_dtype=torch.bfloat16)
    path = root / "ckpt" / "pytorch_model.bin"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    name = "transformer.h.0.attn.c_attn"
    a, b = lora[name]
    expected = state[f"{PREFIX}{name}.base_layer.weight"].float() + (alpha / rank) * (b @ a).T
    return {"path": path, "base_dir": base_dir, "check_module": name, "expected": expected,
            "bytes": path.stat().st_size}


def timed(fn):
    start = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=256, help="questions for the throughput runs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "bench_real_size.json"))
    args = parser.parse_args()

    from nnsight_codi.activation_capture import CaptureConfig, run_capture
    from nnsight_codi.data.eval_datasets import load_eval_dataset
    from nnsight_codi.evaluation import generate_answers
    from nnsight_codi.loading import load_model
    from nnsight_codi.models.checkpoint import convert_reference_checkpoint
    from nnsight_codi.models.converted import save_converted

    root = Path(tempfile.mkdtemp())
    built, t_build = timed(lambda: build_checkpoint(root))
    res: dict = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                 "torch": torch.__version__, "checkpoint_bytes": built["bytes"], "build_seconds": t_build}

    codi, res["load_merge_seconds"] = timed(lambda: load_model(built["path"], base=built["base_dir"],
                                                               device=args.device, dtype="float32"))
    merged = dict(codi._module.named_modules())[built["check_module"]].weight.detach().float().cpu()
    res["merge_max_abs_error"] = float((merged - built["expected"]).abs().max())
    assert res["merge_max_abs_error"] < 1e-5, res["merge_max_abs_error"]

    questions = list(load_eval_dataset("synthetic", limit=args.n, seed=3)["question"])
    batched = codi.decode(codi.latent_generate(codi.encode(questions[:8]), max_new_tokens=args.max_new_tokens))
    single = [codi.decode(codi.latent_generate(codi.encode([q]), max_new_tokens=args.max_new_tokens))[0]
              for q in questions[:8]]
    res["batched_equals_single_fp32"] = f"{sum(a == b for a, b in zip(batched, single))}/8"
    del codi

    def convert():
        lm, tok, prj, cfg = convert_reference_checkpoint(built["path"], built["base_dir"])
        return save_converted(root / "converted", lm, tok, prj, cfg)

    converted, res["convert_seconds"] = timed(convert)
    res["converted_bytes"] = sum(f.stat().st_size for f in converted.rglob("*") if f.is_file())
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    codi, res["load_converted_seconds"] = timed(lambda: load_model(converted, device=args.device, dtype="bfloat16"))
    generate_answers(codi, questions[: args.batch_size], args.batch_size, max_new_tokens=args.max_new_tokens,
                     progress=False)  # warm-up
    _, t_eval = timed(lambda: generate_answers(codi, questions, args.batch_size, max_new_tokens=args.max_new_tokens,
                                               progress=False))
    res["eval_questions_per_second_bf16"] = round(args.n / t_eval, 1)
    store = root / "capture.zarr"
    cap, t_cap = timed(lambda: run_capture(store, CaptureConfig(
        model=str(converted), limit=args.n, seed=3, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        variables=("hidden", "latent_input", "answer_pred", "answer_gold", "correct", "prompt_ids"),
        store_dtype="float16", model_dtype="bfloat16", device=args.device), codi=codi, progress=False))
    res["capture_examples_per_second_bf16"] = round(args.n / t_cap, 1)
    res["store_bytes_per_example"] = round(sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / args.n)
    if args.device.startswith("cuda"):
        res["peak_device_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    res.update({"n": args.n, "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "num_latents": 6})
    print(json.dumps(res, indent=2))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
