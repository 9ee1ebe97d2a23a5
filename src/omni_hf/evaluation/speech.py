"""Score speech: WER/CER (an ASR), speaker similarity (a speaker encoder, against a reference voice), punctuation-pause
error (`omni_hf.training.rewards.pause_error`) and optionally naturalness, one clip at a time, with each scorer's
model named in the results. A clip that cannot be scored (unreadable audio, an empty text) gets an `error` entry
instead of stopping the run.

    scorers = SpeechScorers.load()                     # pocketsphinx + Resemblyzer, offline
    items = [{"id": "a", "text": "Hello there.", "audio": "a.wav"}]
    results = score_items(items, scorers, reference="voice.wav")
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
from transformers.utils import logging

from ..processing.audio import read_audio
from ..training.rewards import PauseConfig, pause_error
from .asr import load_asr
from .speaker import cosine, load_speaker_encoder
from .text import error_rates

logger = logging.get_logger(__name__)

MAX_CLIP_SECONDS = 120.0
METRICS = ("wer", "cer", "speaker_similarity", "pause_error", "naturalness")


@dataclass
class SpeechScorers:
    """The scorers of one evaluation: `asr(waveform, rate) -> str`, `speaker(waveform, rate) -> (dim,)` (or None),
    `naturalness(waveform, rate) -> float` (or None); each with a `name`."""

    asr: object
    speaker: object | None = None
    naturalness: object | None = None
    pause_config: PauseConfig = field(default_factory=PauseConfig)

    @classmethod
    def load(
        cls, asr: str | None = None, speaker: str | None = None, naturalness: str | None = None, device: str = "cpu"
    ) -> SpeechScorers:
        """Offline defaults (pocketsphinx, Resemblyzer, no naturalness) unless a checkpoint is named; `speaker="none"`
        leaves similarity out."""
        from .naturalness import load_naturalness

        encoder = None if speaker == "none" else load_speaker_encoder(speaker, device)
        return cls(load_asr(asr, device=device), encoder, load_naturalness(naturalness, device))

    def names(self) -> dict[str, str]:
        """Which model each metric came from (what a report and a card show)."""
        names = {"asr": self.asr.name, "pause_error": "omni_hf energy pauses vs punctuation"}
        if self.speaker is not None:
            names["speaker_similarity"] = self.speaker.name
        if self.naturalness is not None:
            names["naturalness"] = self.naturalness.name
        return names


def load_clip(audio, what: str) -> tuple[np.ndarray, int]:
    """A clip (path, bytes, `(array, rate)`) → float32 mono and its rate; ValueError naming `what` when unreadable."""
    try:
        waveform, rate = read_audio(audio, max_seconds=MAX_CLIP_SECONDS)
    except (ValueError, OSError, RuntimeError) as error:
        raise ValueError(f"{what}: unreadable audio ({error})") from None
    if rate is None:
        raise ValueError(f"{what}: an array without its sampling rate (give (array, rate))")
    if not np.all(np.isfinite(waveform)):
        raise ValueError(f"{what}: the audio has NaN or infinite samples")
    return waveform, int(rate)


def reference_embedding(scorers: SpeechScorers, reference) -> np.ndarray | None:
    """The speaker embedding of the reference voice (a clip), or None without a speaker scorer or reference."""
    if scorers.speaker is None or reference is None:
        return None
    waveform, rate = load_clip(reference, "reference voice")
    return scorers.speaker(waveform, rate)


def score_clip(scorers: SpeechScorers, text: str, waveform: np.ndarray, rate: int, reference=None) -> dict:
    """Every metric of one clip: `transcript`, `wer`, `cer`, `pause_error`, `seconds`, and `speaker_similarity` (to
    the `reference` embedding) and `naturalness` when their scorers are loaded."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty text: nothing to compare the speech with (got {text!r})")
    transcript = scorers.asr(waveform, rate) if waveform.size else ""
    row = {"transcript": transcript, **error_rates(text, transcript), "seconds": round(waveform.size / rate, 3)}
    row["pause_error"] = float(pause_error(text, waveform, rate, scorers.pause_config))
    if reference is not None:
        row["speaker_similarity"] = cosine(scorers.speaker(waveform, rate), reference)
    if scorers.naturalness is not None:
        row["naturalness"] = float(scorers.naturalness(waveform, rate))
    return row


def score_items(items: list[dict], scorers: SpeechScorers, reference=None, system: str = "clips") -> list[dict]:
    """Score `items` (`{"id", "text", "audio"}`; `audio` a path, bytes or `(array, rate)`; an item's own
    `"reference"` clip overrides `reference`). Each result has `id`, `system`, `text` and the metrics, or `error`."""
    shared = reference_embedding(scorers, reference)
    results = []
    for i, item in enumerate(items):
        name = str(item.get("id", i))
        row = {"id": name, "system": system, "text": item.get("text")}
        try:
            waveform, rate = load_clip(item.get("audio"), f"item {name}")
            voice = reference_embedding(scorers, item["reference"]) if item.get("reference") else shared
            row |= score_clip(scorers, item.get("text"), waveform, rate, voice)
        except ValueError as error:
            row["error"] = str(error)
            logger.warning(f"eval: {row['error']}")
        results.append(row)
    return results


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per system: item and error counts and the mean of each metric over the items it was measured on (WER as
    Seed-TTS-eval reports it: the mean of the per-item WERs)."""
    systems: dict[str, dict] = {}
    for row in results:
        summary = systems.setdefault(row["system"], {"items": 0, "errors": 0})
        summary["items"] += 1
        summary["errors"] += "error" in row
    for system, summary in systems.items():
        rows = [r for r in results if r["system"] == system and "error" not in r]
        for metric in METRICS:
            values = [r[metric] for r in rows if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
            if values:
                summary[metric] = float(np.mean(values))
        summary["seconds"] = float(sum(r.get("seconds", 0.0) for r in rows))
    return systems


def read_texts(path: str | os.PathLike) -> list[str]:
    """One text per non-empty line of a UTF-8 file (`--texts`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--texts {path}: no such file")
    with open(path, encoding="utf-8") as file:
        texts = [line.strip() for line in file if line.strip()]
    if not texts:
        raise ValueError(f"--texts {path}: no text in the file (one text per line expected)")
    return texts


__all__ = ["METRICS", "SpeechScorers", "load_clip", "read_texts", "score_clip", "score_items", "summarize"]
