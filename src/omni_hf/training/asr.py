"""Transcribers for ranking the Talker's speech: pocketsphinx offline (the default, `"pocketsphinx"`), any
transformers ASR checkpoint (pipeline API) or a user callable.

A transcriber is called as `transcriber(waveform, sampling_rate) -> str` with a float32 mono `(samples,)` waveform;
`Transcriber` resamples to the rate the model or callable wants (`omni_hf.processing.audio.resample_audio`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
from transformers.utils import logging

from ..processing.audio import THINKER_SAMPLING_RATE, resample_audio

logger = logging.get_logger(__name__)

DEFAULT_ASR_MODEL = "pocketsphinx"  # offline, ships its English model (omni_hf.evaluation.asr); or name Whisper


class Transcriber:
    """Wrap `function(waveform float32 at sampling_rate) -> str` so any input rate is accepted."""

    def __init__(
        self, function: Callable[[np.ndarray], str], sampling_rate: int = THINKER_SAMPLING_RATE, name: str = "callable"
    ):
        if not callable(function):
            raise ValueError(f"transcriber must be callable, got {type(function).__name__}")
        self.function, self.sampling_rate, self.name = function, int(sampling_rate), name

    def __call__(self, waveform, sampling_rate: int) -> str:
        audio = resample_audio(np.asarray(waveform, dtype=np.float32), int(sampling_rate), self.sampling_rate)
        text = self.function(audio)
        if not isinstance(text, str):
            raise ValueError(f"transcriber {self.name!r} must return a str, got {type(text).__name__}")
        return text

    def __repr__(self) -> str:
        return f"Transcriber({self.name!r}, sampling_rate={self.sampling_rate})"


def build_transcriber(
    asr: str | Callable | Transcriber | None = None,
    device=None,
    sampling_rate: int = THINKER_SAMPLING_RATE,
    generate_kwargs: dict | None = None,
    **pipeline_kwargs,
) -> Transcriber:
    """A `Transcriber` from a transformers ASR model id or local path (`pipeline("automatic-speech-recognition")`),
    a callable `(waveform at sampling_rate) -> str`, or an existing `Transcriber`. None or `"pocketsphinx"`: the
    offline pocketsphinx recogniser (`omni_hf.evaluation.asr.PocketSphinxASR`, nothing downloaded).

    Raises:
        ValueError: the model cannot be loaded (naming it and the reason).
    """
    if isinstance(asr, Transcriber):
        return asr
    if callable(asr):
        if len(inspect.signature(asr).parameters) < 1:
            raise ValueError("an ASR callable must take the waveform as its first argument")
        return Transcriber(asr, sampling_rate, getattr(asr, "__name__", type(asr).__name__))
    asr = asr or DEFAULT_ASR_MODEL
    if asr == "pocketsphinx":
        from ..evaluation.asr import PocketSphinxASR

        recogniser = PocketSphinxASR()
        rate = recogniser.sampling_rate
        logger.info(f"ASR for ranking: {recogniser.name}")
        return Transcriber(lambda audio: recogniser(audio, rate), rate, recogniser.name)
    if not isinstance(asr, str):
        raise ValueError(f"asr must be a model id/path, a callable or a Transcriber, got {type(asr).__name__}")
    from transformers import pipeline

    try:
        pipe = pipeline("automatic-speech-recognition", model=asr, device=device, **pipeline_kwargs)
    except Exception as error:  # missing files, no network, not an ASR model ...
        where = "local directory" if Path(asr).exists() else "model id"
        raise ValueError(
            f"ASR model {asr!r} ({where}) cannot be loaded with transformers' automatic-speech-recognition "
            f"pipeline: {type(error).__name__}: {error}"
        ) from error
    rate = int(pipe.feature_extractor.sampling_rate)
    kwargs = {"generate_kwargs": generate_kwargs} if generate_kwargs else {}

    def transcribe(audio: np.ndarray) -> str:
        return pipe({"raw": audio, "sampling_rate": rate}, **kwargs)["text"].strip()

    logger.info(f"ASR for ranking: {asr} ({type(pipe.model).__name__}, {rate} Hz)")
    return Transcriber(transcribe, rate, asr)


__all__ = ["DEFAULT_ASR_MODEL", "Transcriber", "build_transcriber"]
