"""The CODI step convention (DESIGN.md), torch-free so offline analyses can use it.

For a question the model sees `[q][bot][z1 .. zK][eot][answer]`; each LM call is one step:
0 = bot, k = latent k (1..K), K+1 = eot, K+1+j = answer token j.

Example:
    >>> step_names(2)
    ['bot', 'latent1', 'latent2', 'eot']
    >>> step_name(4, 2)
    'answer1'
"""

from __future__ import annotations


def step_names(num_latents: int) -> list[str]:
    """Names of the steps bot..eot: `['bot', 'latent1', …, 'latentK', 'eot']`."""
    if num_latents < 0:
        raise ValueError(f"num_latents must be >= 0, got {num_latents}")
    return ["bot"] + [f"latent{k}" for k in range(1, num_latents + 1)] + ["eot"]


def step_name(step: int, num_latents: int) -> str:
    """Name of any step index, answer tokens included (`answer1`, `answer2`, …)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step <= num_latents + 1:
        return step_names(num_latents)[step]
    return f"answer{step - num_latents - 1}"
