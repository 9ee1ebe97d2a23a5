"""Speech recognisers for scoring: pocketsphinx offline by default, any transformers ASR checkpoint when named.

A recogniser is called as `asr(waveform, sampling_rate) -> str` with a float32 mono `(samples,)` waveform and
carries `name`: the model it used (reported next to every figure). Nothing is downloaded unless the user names a Hub
checkpoint (`load_asr("openai/whisper-large-v3")` goes through transformers' pipeline and the Hub cache).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
from transformers.utils import logging

from ..processing.audio import resample_audio

logger = logging.get_logger(__name__)

POCKETSPHINX = "pocketsphinx"
NOISE_FLOOR = 3e-3  # absolute, after peak normalisation to 0.5 (about -44 dB)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class PocketSphinxASR:
    """CMU pocketsphinx with the US English acoustic model, language model and dictionary its wheel ships (offline).

    The clip is resampled to 16 kHz and peak-normalised, padded with 0.25 s of silence on each side, and a fixed
    (seeded) noise floor is added: pocketsphinx's features fail on exact digital silence (synthetic speech has
    stretches of zeros), which took its WER on espeak-ng speech from ~0.86 to ~0.5.
    """

    sampling_rate = 16000

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError as error:
            raise ValueError(f"the offline ASR needs pocketsphinx: pip install 'omni-hf[eval]' ({error})") from None
        self._decoder = Decoder(samprate=self.sampling_rate, logfn="/dev/null")
        model = Path(self._decoder.config["hmm"])
        lm = Path(self._decoder.config["lm"]).name
        self.name = f"pocketsphinx {_version('pocketsphinx')} ({model.name} acoustic model, {lm})"

    def __call__(self, waveform, sampling_rate: int) -> str:
        audio = resample_audio(np.asarray(waveform, dtype=np.float32), int(sampling_rate), self.sampling_rate)
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak < 1e-4:
            return ""
        pad = np.zeros(self.sampling_rate // 4, dtype=np.float32)
        audio = np.concatenate([pad, audio * (0.5 / peak), pad])
        audio = audio + NOISE_FLOOR * np.random.default_rng(0).standard_normal(audio.size).astype(np.float32)
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""

    def __repr__(self) -> str:
        return f"PocketSphinxASR({self.name!r})"


class TransformersASR:
    """Any transformers automatic-speech-recognition checkpoint (Whisper, Paraformer ports, wav2vec2 CTC ...), by Hub
    id or local folder; `generate_kwargs` e.g. `{"language": "en"}` for Whisper."""

    def __init__(self, checkpoint: str, device=None, generate_kwargs: dict | None = None):
        from ..training.asr import build_transcriber

        self._transcriber = build_transcriber(checkpoint, device=device, generate_kwargs=generate_kwargs)
        self.sampling_rate = self._transcriber.sampling_rate
        self.name = f"{checkpoint} (transformers {_version('transformers')})"

    def __call__(self, waveform, sampling_rate: int) -> str:
        return self._transcriber(waveform, sampling_rate)

    def __repr__(self) -> str:
        return f"TransformersASR({self.name!r})"


def load_asr(name: str | None = None, device=None, generate_kwargs: dict | None = None):
    """`None` or `"pocketsphinx"`: the offline default; anything else: a transformers ASR checkpoint (id or path).

    Raises:
        ValueError: the recogniser cannot be loaded (naming it and why).
    """
    if name is None or name == POCKETSPHINX:
        return PocketSphinxASR()
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"--asr must be 'pocketsphinx' or a transformers checkpoint, got {name!r}")
    return TransformersASR(name, device=device, generate_kwargs=generate_kwargs)


__all__ = ["POCKETSPHINX", "PocketSphinxASR", "TransformersASR", "load_asr"]
