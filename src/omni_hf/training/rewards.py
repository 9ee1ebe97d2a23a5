"""Scores that rank the Talker's own speech for DPO (paper Section 4.3): word error rate and punctuation-pause error.

* WER: the ASR transcript against the reply text, both normalised (lower case, punctuation removed, spaces
  collapsed) with jiwer.
* Punctuation-pause error: pauses are expected after internal punctuation marks (`,;:.!?` followed by more words).
  Silences are found in the waveform by frame energy (relative to the loudest frame, so the gain does not matter);
  each expected pause is placed on the voiced span in proportion to the characters before its mark, and matched to
  the nearest unused silence within a tolerance. The error is the number of expected pauses with no silence plus
  the number of silences at no punctuation.
* Rank: WER first, the pause error breaks ties; the best and the worst candidate become (chosen, rejected); if they
  tie on both, the prompt gives no pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import jiwer
import numpy as np
from transformers.utils import logging

logger = logging.get_logger(__name__)

_NORMALISE = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)
MIN_SAMPLING_RATE = 4000


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, single spaces (what WER compares)."""
    return " ".join(_NORMALISE(text)[0])


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of `hypothesis` against `reference` after normalisation (an empty transcript scores 1.0)."""
    if not isinstance(reference, str) or not normalize_text(reference):
        raise ValueError(f"reference must be a text with at least one word, got {reference!r}")
    return float(
        jiwer.wer(reference, hypothesis or "", reference_transform=_NORMALISE, hypothesis_transform=_NORMALISE)
    )


@dataclass
class PauseConfig:
    """Thresholds of the energy-based pause detector and of the punctuation-pause matching.

    Args:
        frame_ms: analysis frame (and hop) length.
        silence_db: a frame is silent when its RMS is this many dB below the loudest frame.
        min_pause_ms: shortest silence counted as a pause (word gaps are shorter).
        marks: punctuation after which a pause is expected.
        tolerance: how far (fraction of the voiced span) a silence may lie from the expected place of its pause.
    """

    frame_ms: float = 20.0
    silence_db: float = -35.0
    min_pause_ms: float = 150.0
    marks: str = ",;:.!?"
    tolerance: float = 0.15

    def __post_init__(self):
        if self.frame_ms <= 0 or self.min_pause_ms <= 0 or not 0 < self.tolerance <= 1 or self.silence_db >= 0:
            raise ValueError(
                "PauseConfig expects frame_ms > 0, min_pause_ms > 0, 0 < tolerance <= 1 and silence_db < 0, got "
                f"{self}"
            )


def _check_audio(waveform, sampling_rate) -> np.ndarray:
    if not isinstance(sampling_rate, (int, np.integer)) or sampling_rate < MIN_SAMPLING_RATE:
        raise ValueError(
            f"sampling_rate must be an integer rate in Hz (>= {MIN_SAMPLING_RATE}), got {sampling_rate!r}"
        )
    audio = np.asarray(waveform, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"waveform must be mono `(samples,)`, got shape {audio.shape}")
    return audio


def detect_pauses(
    waveform, sampling_rate: int, config: PauseConfig | None = None
) -> tuple[list[tuple[float, float]], tuple[float, float] | None]:
    """Internal silences of a mono waveform.

    Returns:
        `(pauses, voiced)`: the pauses as `(start_s, end_s)`, leading and trailing silence excluded, and the voiced
        span `(first_s, last_s)` (None for a silent or empty waveform).
    """
    config = config or PauseConfig()
    audio = _check_audio(waveform, sampling_rate)
    hop = max(1, int(round(sampling_rate * config.frame_ms / 1000)))
    frames = len(audio) // hop
    if frames == 0:
        return [], None
    rms = np.sqrt(np.mean(audio[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    if rms.max() < 1e-5:  # silent
        return [], None
    voiced = 20 * np.log10(rms / rms.max()) > config.silence_db
    active = np.flatnonzero(voiced)
    first, last = int(active[0]), int(active[-1])
    pauses, start = [], None
    min_frames = config.min_pause_ms / config.frame_ms
    for i in range(first, last + 1):
        if not voiced[i] and start is None:
            start = i
        elif voiced[i] and start is not None:
            if i - start >= min_frames:
                pauses.append((start * hop / sampling_rate, i * hop / sampling_rate))
            start = None
    return pauses, (first * hop / sampling_rate, (last + 1) * hop / sampling_rate)


def expected_pause_positions(text: str, marks: str = PauseConfig.marks) -> list[float]:
    """Where pauses are expected: for each internal punctuation mark (followed by more words), the fraction of the
    text's letters and digits that come before it."""
    letters = [i for i, ch in enumerate(text) if ch.isalnum()]
    if not letters:
        return []
    positions = []
    for match in re.finditer(f"[{re.escape(marks)}]+", text):
        before = sum(1 for i in letters if i < match.start())
        if 0 < before < len(letters):  # internal: words on both sides
            positions.append(before / len(letters))
    return positions


def pause_error(text: str, waveform, sampling_rate: int, config: PauseConfig | None = None) -> int:
    """Pauses placed wrongly: expected pauses with no silence near their place + silences at no punctuation."""
    config = config or PauseConfig()
    expected = expected_pause_positions(text, config.marks)
    pauses, voiced = detect_pauses(waveform, sampling_rate, config)
    if voiced is None:
        return len(expected)
    span = max(voiced[1] - voiced[0], 1e-6)
    found = [((start + end) / 2 - voiced[0]) / span for start, end in pauses]
    unused = list(range(len(found)))
    missing = 0
    for place in expected:
        best = min(unused, key=lambda j: abs(found[j] - place), default=None)
        if best is not None and abs(found[best] - place) <= config.tolerance:
            unused.remove(best)
        else:
            missing += 1
    return missing + len(unused)


@dataclass
class CandidateScore:
    """The scores of one spoken candidate (lower is better)."""

    wer: float
    pause_error: float
    transcript: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[float, float]:
        return (round(self.wer, 6), round(self.pause_error, 6))


def rank_candidates(scores: list[CandidateScore]) -> tuple[int, int] | None:
    """`(best, worst)` indices by (WER, pause error), or None when the best and the worst tie (no preference)."""
    if len(scores) < 2:
        raise ValueError(f"ranking needs at least 2 candidates, got {len(scores)}")
    order = sorted(range(len(scores)), key=lambda i: scores[i].key)
    best, worst = order[0], order[-1]
    return None if scores[best].key == scores[worst].key else (best, worst)


class SpeechScorer:
    """Scores a spoken candidate: transcribe it (any `Transcriber`), WER against the reply text, pause error.

    `scorer(text, codes, waveform, sampling_rate) -> CandidateScore`; `needs_audio` tells the pair builder to vocode.
    """

    needs_audio = True

    def __init__(self, transcriber, pause_config: PauseConfig | None = None):
        self.transcriber = transcriber
        self.pause_config = pause_config or PauseConfig()

    def __call__(self, text: str, codes, waveform, sampling_rate: int) -> CandidateScore:
        audio = _check_audio(waveform, sampling_rate)
        transcript = self.transcriber(audio, sampling_rate) if audio.size else ""
        return CandidateScore(
            wer=word_error_rate(text, transcript),
            pause_error=float(pause_error(text, audio, sampling_rate, self.pause_config)),
            transcript=transcript,
        )


__all__ = [
    "CandidateScore",
    "PauseConfig",
    "SpeechScorer",
    "detect_pauses",
    "expected_pause_positions",
    "normalize_text",
    "pause_error",
    "rank_candidates",
    "word_error_rate",
]
