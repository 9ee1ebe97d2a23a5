"""Scores that rank the Talker's own speech for DPO (paper Section 4.3): word error rate and punctuation-pause error.

* WER: the ASR transcript against the reply text, both normalised (lower case, punctuation removed, spaces
  collapsed) with jiwer.
* Punctuation-pause error: pauses are expected after internal punctuation marks (`,;:.!?` followed by more words).
  Silences are found in the waveform by frame energy (relative to the loudest frame, so the gain does not matter);
  each expected pause is placed on the voiced span in proportion to the characters before its mark, and matched to
  the nearest unused silence within a tolerance. The error is the number of expected pauses with no silence plus
  the number of silences at no punctuation.
* Speaker similarity: cosine of speaker embeddings of the candidate and of the voice's reference, from the model's
  own ECAPA speaker encoder (token2wav's DiT) or any pluggable `embed(waveform, sampling_rate) -> vector`.
  Ranking by WER alone can flatten prosody and drift the voice; this keeps the voice in the ranking.
* Rank: a `RankingRule` over those metrics, lexicographic (default `wer,pause_error`: WER first, the pause error
  breaks ties) or a weighted sum (`wer=1,pause_error=0.1,speaker_similarity=-2`); the best and the worst candidate
  become (chosen, rejected); if they tie, the prompt gives no pair.
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
    """The scores of one spoken candidate: `wer` and `pause_error` (lower is better), `speaker_similarity` (cosine,
    higher is better; None when not measured), `extra` any other metric a ranking rule may name."""

    wer: float
    pause_error: float
    transcript: str = ""
    extra: dict = field(default_factory=dict)
    speaker_similarity: float | None = None

    @property
    def key(self) -> tuple[float, ...]:
        return DEFAULT_RULE.key(self)

    def metrics(self) -> dict[str, float]:
        """Every measured metric by name (`wer`, `pause_error`, `speaker_similarity` when set, `extra`)."""
        values = {"wer": float(self.wer), "pause_error": float(self.pause_error)}
        if self.speaker_similarity is not None:
            values["speaker_similarity"] = float(self.speaker_similarity)
        return values | {k: float(v) for k, v in self.extra.items()}


@dataclass(frozen=True)
class RankingRule:
    """How candidates are ordered (smallest key first = best).

    Args:
        terms: `(metric, weight)` pairs; a negative weight means "higher is better" (speaker similarity).
        mode: `"lexicographic"` (the first metric decides, the next break ties; weights only give the direction)
            or `"weighted"` (one score: the weighted sum).
    """

    terms: tuple[tuple[str, float], ...] = (("wer", 1.0), ("pause_error", 1.0))
    mode: str = "lexicographic"

    def __post_init__(self):
        if self.mode not in ("lexicographic", "weighted"):
            raise ValueError(f"ranking mode must be 'lexicographic' or 'weighted', got {self.mode!r}")
        if not self.terms or any(not name or weight == 0 for name, weight in self.terms):
            raise ValueError(f"a ranking rule needs metrics with non-zero weights, got {self.terms!r}")

    @classmethod
    def parse(cls, spec: str | RankingRule | None) -> RankingRule:
        """`"wer,pause_error,-speaker_similarity"` → lexicographic (`-` = higher is better);
        `"wer=1,pause_error=0.1,speaker_similarity=-2"` → weighted sum. None → the default (WER, then pauses)."""
        if spec is None or isinstance(spec, RankingRule):
            return spec or DEFAULT_RULE
        parts = [p.strip() for p in str(spec).split(",") if p.strip()]
        if not parts:
            raise ValueError(f"ranking rule {spec!r} names no metric")
        weighted = ["=" in p for p in parts]
        if any(weighted) and not all(weighted):
            raise ValueError(f"ranking rule {spec!r}: give every metric a weight (name=w) or none")
        terms = []
        for part in parts:
            if all(weighted):
                name, _, weight = part.partition("=")
                try:
                    terms.append((name.strip(), float(weight)))
                except ValueError:
                    raise ValueError(f"ranking rule {spec!r}: weight of {name.strip()!r} is not a number") from None
            else:
                terms.append((part.lstrip("+-"), -1.0 if part.startswith("-") else 1.0))
        return cls(tuple(terms), "weighted" if all(weighted) else "lexicographic")

    @property
    def metrics(self) -> list[str]:
        return [name for name, _ in self.terms]

    def key(self, score: CandidateScore) -> tuple[float, ...]:
        values = score.metrics()
        missing = [name for name in self.metrics if name not in values]
        if missing:
            raise ValueError(
                f"ranking rule needs {missing} but the scorer measured only {sorted(values)} "
                "(speaker_similarity needs SpeechScorer(..., speaker_similarity=SpeakerSimilarity(...)))"
            )
        if self.mode == "weighted":
            return (round(sum(w * values[n] for n, w in self.terms), 6),)
        return tuple(round((1 if w > 0 else -1) * values[n], 6) for n, w in self.terms)

    def score(self, score: CandidateScore) -> float:
        """One number per candidate (lower is better): the weighted sum, or the first metric (lexicographic)."""
        return float(self.key(score)[0])

    def __str__(self) -> str:
        if self.mode == "weighted":
            return ",".join(f"{n}={w:g}" for n, w in self.terms)
        return ",".join(("-" if w < 0 else "") + n for n, w in self.terms)


DEFAULT_RULE = RankingRule()


def rank_candidates(scores: list[CandidateScore], rule: RankingRule | str | None = None) -> tuple[int, int] | None:
    """`(best, worst)` indices by `rule` (default: WER, then pause error), or None when they tie (no preference)."""
    if len(scores) < 2:
        raise ValueError(f"ranking needs at least 2 candidates, got {len(scores)}")
    rule = RankingRule.parse(rule)
    keys = [rule.key(s) for s in scores]
    order = sorted(range(len(scores)), key=lambda i: keys[i])
    best, worst = order[0], order[-1]
    return None if keys[best] == keys[worst] else (best, worst)


class SpeakerSimilarity:
    """Cosine similarity of a candidate's speaker embedding to a reference voice's (higher = closer voice).

    `SpeakerSimilarity.from_model(model, speaker)` uses the model's own ECAPA speaker encoder (token2wav's DiT, on
    the 24 kHz log-mel of `omni_hf.token2wav.mel`) and the speaker's reference mel. Any other embedder plugs in:
    `SpeakerSimilarity(embed, reference)` with `embed(waveform float32 (samples,), sampling_rate) -> (dim,)` and
    `reference` a `(dim,)` vector (or a waveform with `reference_rate`).
    """

    def __init__(self, embed, reference, reference_rate: int | None = None):
        if not callable(embed):
            raise ValueError(f"embed must be callable (waveform, sampling_rate) -> vector, got {type(embed).__name__}")
        self.embed = embed
        reference = np.asarray(reference, dtype=np.float32)
        self.reference = embed(reference, reference_rate) if reference_rate else reference.reshape(-1)

    @classmethod
    def from_model(cls, model, speaker: str = "Chelsie") -> SpeakerSimilarity:
        import torch

        from ..token2wav.mel import MelSettings, log_mel_spectrogram, resample

        if speaker not in model.speakers:
            raise ValueError(f"speaker {speaker!r} is not one of the model's speakers {list(model.speakers)}")
        encoder = model.token2wav.dit.input_embed.spk_encoder
        rate = MelSettings().sampling_rate

        @torch.no_grad()
        def encode_mel(mel):
            weight = next(encoder.parameters())
            return encoder(mel.to(weight.device, weight.dtype)).float().cpu().numpy()[0]

        def embed(waveform, sampling_rate):
            audio = resample(np.asarray(waveform, dtype=np.float32), int(sampling_rate), rate)
            return encode_mel(log_mel_spectrogram(torch.from_numpy(audio)))

        return cls(embed, encode_mel(torch.as_tensor(model.speakers[speaker].reference_mel)))

    def __call__(self, waveform, sampling_rate: int) -> float:
        audio = _check_audio(waveform, sampling_rate)
        if audio.size < sampling_rate // 50:
            return 0.0  # under one code of speech: no voice to compare
        vector = np.asarray(self.embed(audio, sampling_rate), dtype=np.float32).reshape(-1)
        if vector.shape != self.reference.shape:
            raise ValueError(f"speaker embedding shape {vector.shape} != reference shape {self.reference.shape}")
        denominator = float(np.linalg.norm(vector) * np.linalg.norm(self.reference)) or 1e-12
        return float(np.dot(vector, self.reference) / denominator)


class SpeechScorer:
    """Scores a spoken candidate: transcribe it (any `Transcriber`), WER against the reply text, pause error.

    `scorer(text, codes, waveform, sampling_rate) -> CandidateScore`; `needs_audio` tells the pair builder to vocode.
    """

    needs_audio = True

    def __init__(self, transcriber, pause_config: PauseConfig | None = None, speaker_similarity=None):
        self.transcriber = transcriber
        self.pause_config = pause_config or PauseConfig()
        self.speaker_similarity = speaker_similarity

    def __call__(self, text: str, codes, waveform, sampling_rate: int) -> CandidateScore:
        audio = _check_audio(waveform, sampling_rate)
        transcript = self.transcriber(audio, sampling_rate) if audio.size else ""
        similarity = None
        if self.speaker_similarity is not None:
            similarity = self.speaker_similarity(audio, sampling_rate) if audio.size else 0.0
        return CandidateScore(
            wer=word_error_rate(text, transcript),
            pause_error=float(pause_error(text, audio, sampling_rate, self.pause_config)),
            transcript=transcript,
            speaker_similarity=similarity,
        )


__all__ = [
    "CandidateScore",
    "PauseConfig",
    "RankingRule",
    "SpeakerSimilarity",
    "SpeechScorer",
    "detect_pauses",
    "expected_pause_positions",
    "normalize_text",
    "pause_error",
    "rank_candidates",
    "word_error_rate",
]
