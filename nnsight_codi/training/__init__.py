"""CODI training (codi.md §3): one model as explicit-CoT teacher and latent student.

Modules:
    config: `TrainConfig`, every option of a run (the `train` command's flags).
    encode: tokenization of (question, cot, answer) rows into teacher/student sequences.
    codi: the latent loop with gradients, teacher/student passes and the three losses.
    trainer: `train(cfg)`: data, AdamW + warm-up/cosine, tqdm, periodic evaluation,
              checkpoints/resume, `save_converted` at the end; `export_checkpoint`.
    evaluate: the training-time evaluator (plain torch greedy latent loop, teacher CoT, logit lens).
    report: `final_report`: held-out numbers measured from the saved converted directory.
    base: the tiny word-level GPT-2 and local HF bases (pad/bot/eot = V, V+1, V+2).
    lora: a minimal LoRA (GPT-2 Conv1D and Llama Linear), merged before saving.

Example:
    >>> from nnsight_codi.training import TrainConfig, train      # doctest: +SKIP
    >>> train(TrainConfig(out="out/tiny", steps=3200))             # doctest: +SKIP
"""

from .train_config import TrainConfig
from .trainer import export_checkpoint, train

__all__ = ["TrainConfig", "train", "export_checkpoint"]
