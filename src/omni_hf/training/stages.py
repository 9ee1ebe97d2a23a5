"""Training stages of Qwen2.5-Omni (paper Sections 3–4): what each trains, freezes, and its default limits.

| stage                 | trains                                        | frozen            | max length | packing |
|-----------------------|-----------------------------------------------|-------------------|-----------:|---------|
| `stage1_adapters`     | audio projection + ln_post, vision merger     | everything else   |      8 192 | no      |
| `stage1_encoders`     | audio encoder, vision encoder (incl. adapters)| LLM, lm_head      |      8 192 | no      |
| `stage2_pretrain`     | everything                                    | —                 |      8 192 | yes     |
| `stage3_long_context` | everything                                    | —                 |     32 768 | yes     |
| `sft`                 | everything                                    | —                 |     32 768 | no      |
| `talker_icl`          | the Talker                                    | Thinker, token2wav|      8 192 | no      |

Stage 1 of the paper trains the adapters first, then the encoders, with the LLM frozen; stage 2 unfreezes all on a
multimodal mixture; stage 3 extends sequences to 32k tokens; `sft` is ChatML instruction tuning; `talker_icl` is the
Talker's in-context continuation stage (next speech-code prediction, Thinker frozen). Learning rates are our defaults
(the paper gives none).
"""

from dataclasses import dataclass, field

from torch import nn
from transformers.utils import logging

logger = logging.get_logger(__name__)

AUDIO_ADAPTER = ("audio_tower.proj", "audio_tower.ln_post")
VISION_ADAPTER = ("visual.merger",)


@dataclass(frozen=True)
class Stage:
    """One training stage.

    Args:
        name: the stage's name (a key of `STAGES`).
        purpose: one line for logs, cards and the README.
        trainable: parameter-name prefixes that train (`""` = every parameter); all others are frozen.
        model: `"thinker"` (an `OmniThinkerForConditionalGeneration`) or `"talker"` (the full model, Talker trained).
        max_length: default maximum tokens per sample.
        packing: whether samples are packed into `max_length` rows by default.
        learning_rate / warmup_ratio: default optimiser settings.
    """

    name: str
    purpose: str
    trainable: tuple[str, ...]
    model: str = "thinker"
    max_length: int = 8192
    packing: bool = False
    learning_rate: float = 1e-5
    warmup_ratio: float = 0.03
    tags: tuple[str, ...] = field(default_factory=tuple)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "stage1_adapters",
            "Stage 1a: train the audio/vision adapters on audio-text and image-text pairs, LLM and encoders frozen.",
            AUDIO_ADAPTER + VISION_ADAPTER,
            learning_rate=1e-3,
        ),
        Stage(
            "stage1_encoders",
            "Stage 1b: train the audio and vision encoders (with their adapters) on paired data, LLM frozen.",
            ("audio_tower", "visual"),
            learning_rate=2e-4,
        ),
        Stage("stage2_pretrain", "Stage 2: train everything on a multimodal mixture.", ("",), packing=True),
        Stage(
            "stage3_long_context",
            "Stage 3: train everything on long audio/video/text data up to 32,768 tokens.",
            ("",),
            max_length=32768,
            packing=True,
        ),
        Stage(
            "sft",
            "Instruction tuning on ChatML dialogues (text, audio, image, video, mixed).",
            ("",),
            max_length=32768,
        ),
        Stage(
            "talker_icl",
            "Talker in-context continuation: next speech-code prediction in dialogue context, Thinker frozen.",
            ("talker.",),
            model="talker",
            learning_rate=1e-4,
        ),
    )
}


def get_stage(name: str, allowed: tuple[str, ...] | None = None) -> Stage:
    """The stage called `name`; a clear error when it does not exist (or is not one `allowed` by a recipe)."""
    choices = allowed or tuple(STAGES)
    if name not in STAGES or name not in choices:
        raise ValueError(f"Unknown stage {name!r}: expected one of {list(choices)}.")
    return STAGES[name]


def apply_freezing(model: nn.Module, stage: Stage, trainable: tuple[str, ...] | None = None) -> dict[str, int]:
    """Set `requires_grad` per the stage (or an explicit `trainable` prefix list); returns parameter counts.

    Raises:
        ValueError: a prefix matches no parameter (a typo would otherwise silently freeze the whole model).
    """
    prefixes = tuple(trainable) if trainable else stage.trainable
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(
                f"Stage {stage.name!r}: trainable prefix {prefix!r} matches no parameter of "
                f"{type(model).__name__} (top-level modules: {sorted({n.split('.')[0] for n in names})})."
            )
    counts = {"trainable": 0, "frozen": 0}
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
        counts["trainable" if param.requires_grad else "frozen"] += param.numel()
    logger.info(f"Stage {stage.name}: {counts['trainable']:,} trainable, {counts['frozen']:,} frozen parameters")
    return counts


__all__ = ["STAGES", "Stage", "apply_freezing", "get_stage"]
