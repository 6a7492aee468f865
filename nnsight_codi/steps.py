"""The CODI step convention, torch-free so offline analyses can use it.

For a question the model sees `[q][bot][z1 .. zK][eot][answer]`; each LM call is one step:
0 = bot, k = latent k (1..K), K+1 = eot, K+1+j = answer token j.

Example:
    >>> step_names(2)
    ['bot', 'latent1', 'latent2', 'eot']
    >>> step_name(4, 2)
    'answer1'

Wherever a step is given (`steer --at`, `--pair`, sweep configs, `Condition`, hooks), the names
work as well as the integers; `resolve_step` turns either into the index once K is known:
    >>> [resolve_step(s, 3) for s in ("bot", "latent2", "eot", 4, "1")]
    [0, 2, 4, 4, 1]
"""

from __future__ import annotations

import re

Step = int | str
"""A step as given by a user: its index, or its name (`bot`, `latent1`..`latentK`, `eot`)."""

_STEP_NAME = re.compile(r"bot|eot|latent[1-9]\d*|answer[1-9]\d*")


def resolve_num_latents(num_latents: int | None, model_latents: int) -> int:
    """K of a run: `num_latents` checked (an integer >= 0), or the model's own K `model_latents` when None.

    The one place "None means the model's K" is decided. Public entry points (`run_loop`,
    `CodiModel.latent_generate`, `evaluate`, the studies, the commands) call it once where the user's value
    enters; everything below them takes K as an `int`. The model's K comes from its config
    (`CodiConfig.num_latents`, whatever its latent family).

    >>> resolve_num_latents(None, 6), resolve_num_latents(0, 6), resolve_num_latents(3, 6)
    (6, 0, 3)
    >>> resolve_num_latents(-1, 6)
    Traceback (most recent call last):
    ...
    ValueError: num_latents must be >= 0, got -1
    """
    if num_latents is None:
        return int(model_latents)
    if isinstance(num_latents, bool) or int(num_latents) != num_latents or int(num_latents) < 0:
        raise ValueError(f"num_latents must be >= 0, got {num_latents}")
    return int(num_latents)


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


def _unknown(step: object) -> ValueError:
    return ValueError(f"unknown step {step!r}: give an integer or a name (bot, latent1..latentK, eot)")


def parse_step(text: Step) -> Step:
    """A step as written (CLI, config): an integer (`"3"` → 3) or a step name, checked for form
    only (`"latent2"`); `resolve_step` checks it against the model's K. Unknown names: ValueError.
    """
    if isinstance(text, bool):
        raise _unknown(text)
    if isinstance(text, int):
        return text
    s = str(text).strip()
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    if not _STEP_NAME.fullmatch(s):
        raise _unknown(text)
    return s


def resolve_step(step: Step, num_latents: int | None) -> int:
    """The index of a step given as an integer or a name, for a run with `num_latents` latents
    (range checks of the index are the caller's; a `latentN` past K is an error here). With
    `num_latents=None` (K not known yet) only `bot` and `latentN` resolve.
    """
    step = parse_step(step)
    if isinstance(step, int):
        return step
    if step == "bot":
        return 0
    if step.startswith("latent"):
        k = int(step[6:])
        if num_latents is not None and k > num_latents:
            raise ValueError(f"step {step!r} does not exist: the run has {num_latents} latents (latent1..latent{num_latents})")
        return k
    if num_latents is None:
        raise ValueError(f"step {step!r} depends on the number of latents K: give its index "
                         f"(or resolve_step({step!r}, K))")
    if step == "eot":
        return num_latents + 1
    return num_latents + 1 + int(step[6:])  # answerN
