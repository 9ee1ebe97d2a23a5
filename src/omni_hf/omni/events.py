"""What `OmniForConditionalGeneration.stream()` yields: text deltas, audio chunks, and one final stats event."""

import contextvars
from dataclasses import dataclass, field

import numpy as np

from ..processing.audio import TOKEN2WAV_SAMPLING_RATE

_STEP_MARKERS: contextvars.ContextVar = contextvars.ContextVar("omni_hf_step_markers", default=False)


@dataclass
class TextDelta:
    """New reply text. `text` is the decoded increment ("" without a tokenizer, or while a multi-byte character is
    incomplete); `token_ids` are the new Thinker tokens."""

    text: str
    token_ids: list[int]


@dataclass
class AudioChunk:
    """A piece of the spoken reply: float32 PCM `audio` `(samples,)` at `sampling_rate`, starting `start` seconds
    into the reply's audio (chunks are contiguous: each starts where the previous ended)."""

    audio: np.ndarray
    start: float
    sampling_rate: int = TOKEN2WAV_SAMPLING_RATE

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sampling_rate


@dataclass
class StreamStats:
    """Timings of one streamed reply (seconds since `stream()` was called, wall clock).

    `stage_seconds` is the compute time of each stage (`thinker`, `talker`, `dit`, `vocoder`), and
    `stage_seconds_to_first_audio` the same up to the first audio chunk (what its latency is made of); `rtf` is each
    stage's time divided by the audio duration, plus `total` (wall time / audio duration; below 1 means a player
    never starves once the first chunk is out). `token_ids` / `speech_code_ids` are the whole reply's Thinker tokens and
    speech codes (end tokens excluded for the codes).
    """

    time_to_first_text: float | None = None
    time_to_first_audio: float | None = None
    wall_seconds: float = 0.0
    text_tokens: int = 0
    speech_codes: int = 0
    audio_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_seconds_to_first_audio: dict[str, float] = field(default_factory=dict)
    rtf: dict[str, float] = field(default_factory=dict)
    token_ids: list[int] = field(default_factory=list)
    speech_code_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        def ms(value):
            return "n/a" if value is None else f"{value * 1000:.0f} ms"

        parts = [
            f"first text {ms(self.time_to_first_text)}",
            f"first audio {ms(self.time_to_first_audio)}",
            f"{self.text_tokens} tokens, {self.speech_codes} codes, {self.audio_seconds:.2f} s of audio",
            f"wall {self.wall_seconds:.2f} s",
        ]
        if self.rtf:
            parts.append("RTF " + ", ".join(f"{k} {v:.2f}" for k, v in self.rtf.items()))
        return "; ".join(parts)


__all__ = ["AudioChunk", "StreamStats", "TextDelta"]


class StepTaken:
    """Yielded by a reply between two of its model steps, only where `enable_step_markers()` was called in the
    current context (the serving engine does, so that it can interleave replies step by step); never otherwise."""


STEP_TAKEN = StepTaken()


def enable_step_markers() -> None:
    """Make replies started in the current context yield `STEP_TAKEN` between model steps (see `StepTaken`)."""
    _STEP_MARKERS.set(True)


def step_markers_enabled() -> bool:
    return _STEP_MARKERS.get()
