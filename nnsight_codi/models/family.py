"""Latent-reasoning families as data: markers, feedback and stop rule of each method the one loop runs.

A *family* is what distinguishes CODI from Coconut (and, later, Soft Thinking, CoLaR, …) once the
loop itself is shared (`tracing.loop.LatentLoopState`). Every family runs the same steps
(`steps.py`: 0 = `bot`, k = `latentk`, K+1 = `eot`, then answer tokens); what differs is data:

- `codi`: step 0 ends with the `bot` id (after `eos` when not `remove_eos`); latent steps get `prj(h)`
  (`projection`), or `h` when `use_prj` is off; step K+1 feeds `eot` (`eot, eos`); greedy answers
  never emit eot and stop at eos.
- `coconut`: the prompt is the question, a newline, then `<|start-latent|>` (the bot marker); latent steps
  get `h` itself (`identity`); step K+1 feeds `<|end-latent|>`; greedy answers mask nothing, and the
  first answer token never stops a row (its reference `generate` takes it unconditionally).

`h` is the previous position's last-layer hidden state after the final norm (both families). The
ids live in the model's `CodiConfig` (`bot_id`, `eot_id`, `latent_id`, `eos_id`, `pad_id`); the rules
live here, as a frozen `LatentFamily` looked up by `CodiConfig.latent_family`.

**Feedback** (`FEEDBACKS`) is what a latent step is fed:
- `projection`: the model's projection of `h` (CODI's `prj`);
- `identity`: `h` itself (Coconut; CODI with `use_prj=False`);
- `constant`: one fixed vector for every row and step — the **pause** control: the same K extra
  positions, no information fed back (`Feedback.pause`); by default the embedding of the family's
  pause token (Coconut: `<|latent|>`, which is literally what its input ids hold there; CODI: `bot`);
- `soft`: the probability-weighted sum of the top-k next-token embeddings (Soft Thinking); the slot
  is defined here (`Feedback.soft`) and filled by the loop's `soft_input`.

A run's feedback is the family's own unless a condition overrides it (`Feedback` passed to the loop):
that is how pause becomes a condition of every family.

**Stop rule**: fixed K (all rows) today. Per-row stops are designed in: the loop state takes
`row_latents` (each row's own number of latents ≤ K); a row past its stop gets masked columns (its
attention mask 0, positions counting its real tokens only), so its answer equals a run of that row
alone with its own K. A dynamic rule (CoLaR: stop when the head samples `###`; Soft Thinking's cold
stop on low entropy) sets a row's stop while the loop runs (`LatentLoopState.stop_rows`).

Example:
    >>> family("coconut").feedback, family("codi").mask_eot
    ('identity', True)
    >>> family("pcCoT")
    Traceback (most recent call last):
    ...
    ValueError: unknown latent family 'pcCoT': known are ...
"""

from __future__ import annotations

from dataclasses import dataclass

FEEDBACKS: tuple[str, ...] = ("projection", "identity", "constant", "soft")

COCONUT_TOKENS: tuple[str, str, str] = ("<|start-latent|>", "<|end-latent|>", "<|latent|>")
"""Coconut's added tokens, in the order its training script adds them (GPT-2: ids 50257, 50258, 50259)."""


@dataclass(frozen=True)
class LatentFamily:
    """The rules of one latent-reasoning family (its ids are in the model's `CodiConfig`).

    Attributes:
        name: `codi`, `coconut`, … (recorded in stores and `codi.json` as `latent_family`).
        feedback: what the trained model feeds back at latent steps (`projection` or `identity`;
            `projection` falls back to `identity` when the model's config has `use_prj=False`).
        clean_question: strip the question and collapse double spaces (CODI's prompt cleanup).
        question_suffix: text appended to every question before tokenising (Coconut: a newline),
            before the model's own `prompt_suffix`.
        mask_eot: greedy answer decoding never emits the eot marker (CODI masks it; Coconut masks nothing).
        eos_stops_from: the first answer index at which eos ends a row (CODI 0; Coconut's generate takes
            its first token unconditionally, so 1).
        pause_token: which config id gives the pause control's constant input (`latent_id` or `bot_id`).
        reference: where the family's reference code lives (for reports).
    """

    name: str
    feedback: str = "projection"
    clean_question: bool = True
    question_suffix: str = ""
    mask_eot: bool = True
    eos_stops_from: int = 0
    pause_token: str = "bot_id"
    reference: str = ""

    def __post_init__(self) -> None:
        if self.feedback not in ("projection", "identity", "soft"):
            raise ValueError(f"family {self.name}: a trained feedback is projection, identity or soft, "
                             f"got {self.feedback!r}")
        if self.eos_stops_from < 0:
            raise ValueError(f"family {self.name}: eos_stops_from must be >= 0")


_FAMILIES: dict[str, LatentFamily] = {}


def register_family(spec: LatentFamily) -> LatentFamily:
    """Add (or replace) a family, keyed by its name."""
    _FAMILIES[spec.name] = spec
    return spec


def family(name: str | None) -> LatentFamily:
    """The family called `name` (None: `codi`, what every `codi.json` without the field means)."""
    key = "codi" if name is None else str(name)
    try:
        return _FAMILIES[key]
    except KeyError:
        raise ValueError(f"unknown latent family {key!r}: known are {', '.join(sorted(_FAMILIES))}") from None


def known_families() -> list[str]:
    """Names of the registered families."""
    return sorted(_FAMILIES)


CODI = register_family(LatentFamily(
    name="codi", feedback="projection", clean_question=True, mask_eot=True, eos_stops_from=0, pause_token="bot_id",
    reference="https://github.com/zhenyi4/codi"))
COCONUT = register_family(LatentFamily(
    name="coconut", feedback="identity", clean_question=False, question_suffix="\n", mask_eot=False, eos_stops_from=1,
    pause_token="latent_id", reference="https://github.com/facebookresearch/coconut"))


@dataclass(frozen=True)
class Feedback:
    """A run's latent input when it is not the family's own (a condition): `constant` or `soft`.

    Attributes:
        kind: `constant` (pause: `vector` at every latent step) or `soft` (Soft Thinking).
        vector: `Float[Tensor, "dim"]` fed at every latent step, for `constant`.
        top_k: number of next-token embeddings mixed, for `soft`.
        temperature: softmax temperature of the mix, for `soft`.
        name: how conditions and stores call it (`pause`, `soft`).
    """

    kind: str
    vector: object = None
    top_k: int = 0
    temperature: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "soft"):
            raise ValueError(f"a condition's feedback is 'constant' or 'soft', got {self.kind!r}")
        if self.kind == "constant" and self.vector is None:
            raise ValueError("constant feedback needs its vector")
        if self.kind == "soft" and self.top_k < 1:
            raise ValueError(f"soft feedback needs top_k >= 1, got {self.top_k}")

    @classmethod
    def pause(cls, vector: object) -> Feedback:
        """The pause control: `vector` (`Float[Tensor, "dim"]`) at every latent step."""
        return cls(kind="constant", vector=vector, name="pause")

    @classmethod
    def soft(cls, top_k: int = 10, temperature: float = 1.0) -> Feedback:
        """Soft Thinking's input: the softmax-weighted sum of the top-`top_k` next-token embeddings."""
        return cls(kind="soft", top_k=top_k, temperature=temperature, name="soft")
