"""`TrainConfig`: every knob of a CODI training run (saved as `train_config.json`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_cli import config_from_dict


@dataclass
class TrainConfig:
    """Options of `train()`; the CLI's `nnsight-codi train` flags map one-to-one onto these.

    Data:
        dataset: "synthetic" or a path to GSM8k-Aug style files (see `data.gsm8k_aug`).
        eval_dataset: path of held-out files for a non-synthetic dataset (default: the last
            `eval_size` rows of `dataset` are held out).
        train_size / eval_size: number of training problems generated (synthetic) and of held-out
            problems. `eval_during` problems of the held-out set are used by the periodic evaluation.
        seed: model init, data order and the synthetic train split's seed.
        test_seed: the synthetic held-out split's seed (must differ from `seed`).
        min_steps, max_steps, value_max, add_max, mul_max, ops: synthetic difficulty.
        include_last_cot: keep the last CoT step (the reference drops it by default).
    Model:
        base: "tiny-gpt2" (built from scratch with the word tokenizer) or a local HF model directory.
        n_layer, n_embd, n_head, max_number: the tiny model's shape and tokenizer range.
        number_init: "random" or "fourier" (number embeddings initialised from their value, see
            `base.number_features`; tiny model only).
        prj_dim, prj_layer_norm: the projection.
        lora_r: 0 for full fine-tuning, > 0 for LoRA adapters of rank r on the attention/MLP linears
            (plus trainable prj and new token embeddings); merged into the saved model.
    CODI:
        num_latents: K latent iterations during training.
        teacher_weight, student_weight, distill_weight: α, β, γ of the total loss.
        distill_loss: "smooth_l1" | "l1" | "l2"; distill_div_std: divide by the teacher's std.
        answer_template: the answer text; "{answer}" is replaced by the number.
        prompt_suffix, remove_eos: prompt format (stored in codi.json).
        teacher_warmup_steps: teacher-only steps before the joint phase.
        distill_warmup_steps: the distillation weight ramps linearly from 0 over these joint steps.
    Optimisation:
        steps: optimizer steps (takes precedence); minutes: wall-clock budget (schedule by time).
        batch_size, lr, weight_decay, warmup_ratio (linear warm-up, then cosine to `min_lr_ratio`·lr),
        max_grad_norm, threads (torch CPU threads; 0 = leave as is), device.
    Bookkeeping:
        out: output directory (model/, checkpoint/, log.jsonl, metrics.json).
        eval_every, checkpoint_every, log_every: in steps (0 = never); progress: show a tqdm bar.
    """

    out: str = "out/codi-run"
    dataset: str = "synthetic"
    eval_dataset: str | None = None
    train_size: int = 200_000
    eval_size: int = 1000
    eval_during: int = 256
    seed: int = 0
    test_seed: int = 1_000_003
    min_steps: int = 2
    max_steps: int = 3
    value_max: int = 99
    add_max: int = 9
    mul_max: int = 4
    ops: str = "+-*/"
    include_last_cot: bool = True

    base: str = "tiny-gpt2"
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    max_number: int = 999
    number_init: str = "random"
    prj_dim: int | None = None
    prj_layer_norm: bool = True
    lora_r: int = 0
    lora_alpha: float = 16.0

    num_latents: int = 6
    teacher_weight: float = 1.0
    student_weight: float = 1.0
    distill_weight: float = 1.0
    distill_loss: str = "smooth_l1"
    distill_div_std: bool = True
    answer_template: str = "The answer is : {answer}"
    prompt_suffix: str = ""
    remove_eos: bool = True
    teacher_warmup_steps: int = 0
    distill_warmup_steps: int = 0

    steps: int | None = 3000
    minutes: float | None = None
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 2.0
    threads: int = 0
    device: str = "cpu"

    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 50
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps or minutes")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if self.num_latents < 0:
            raise ValueError(f"num_latents must be >= 0, got {self.num_latents}")
        if self.distill_loss not in ("smooth_l1", "l1", "l2"):
            raise ValueError(f"distill_loss must be smooth_l1, l1 or l2, got {self.distill_loss!r}")
        if "{answer}" not in self.answer_template or not self.answer_template.endswith("{answer}"):
            raise ValueError(f"answer_template must end with '{{answer}}', got {self.answer_template!r}")
        if self.dataset == "synthetic" and self.seed == self.test_seed:
            raise ValueError("seed and test_seed must differ (train/test disjointness)")
        if min(self.teacher_weight, self.student_weight, self.distill_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, data, "train config")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
