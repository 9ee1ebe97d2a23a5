"""Speaker embeddings for voice similarity: Resemblyzer offline by default, any transformers x-vector checkpoint
(WavLM-SV, e.g. `microsoft/wavlm-base-plus-sv`) when named.

An encoder is called as `encoder(waveform, sampling_rate) -> (dim,)` float32 and carries `name`; `similarity(a, b)`
is the cosine of two embeddings (1 = same direction). Nothing is downloaded unless the user names a Hub checkpoint.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
from transformers.utils import logging

from ..processing.audio import resample_audio

logger = logging.get_logger(__name__)

RESEMBLYZER = "resemblyzer"
MIN_SPEECH_SECONDS = 0.3


def cosine(a, b) -> float:
    """Cosine similarity of two `(dim,)` vectors (0.0 when either is all zeros)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"speaker embeddings differ in size: {a.shape} vs {b.shape}")
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denominator) if denominator > 0 else 0.0


def _check_speech(audio: np.ndarray, sampling_rate: int) -> None:
    if audio.size < MIN_SPEECH_SECONDS * sampling_rate or float(np.abs(audio).max(initial=0.0)) < 1e-4:
        raise ValueError(
            f"too little speech for a speaker embedding: {audio.size / sampling_rate:.2f} s "
            f"(at least {MIN_SPEECH_SECONDS} s of non-silent audio expected)"
        )


class ResemblyzerEncoder:
    """Resemblyzer's pretrained GE2E speaker encoder (weights in its wheel; 256-d, 16 kHz; silences trimmed with
    webrtcvad as Resemblyzer's `preprocess_wav` does)."""

    sampling_rate = 16000

    def __init__(self, device: str = "cpu"):
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as error:
            raise ValueError(
                f"the offline speaker encoder needs resemblyzer: pip install 'omni-hf[eval]' ({error})"
            ) from None
        self._encoder = VoiceEncoder(device=device, verbose=False)
        self._preprocess = preprocess_wav
        self.name = f"resemblyzer {importlib.metadata.version('resemblyzer')} (GE2E speaker encoder, 256-d)"

    def __call__(self, waveform, sampling_rate: int) -> np.ndarray:
        audio = resample_audio(np.asarray(waveform, dtype=np.float32), int(sampling_rate), self.sampling_rate)
        _check_speech(audio, self.sampling_rate)
        trimmed = self._preprocess(audio, source_sr=self.sampling_rate)
        if trimmed.size < MIN_SPEECH_SECONDS * self.sampling_rate:
            trimmed = audio  # the VAD found almost no speech: embed the clip as it is
        return np.asarray(self._encoder.embed_utterance(trimmed), dtype=np.float32)


class TransformersSpeakerEncoder:
    """A transformers audio x-vector checkpoint (`AutoModelForAudioXVector`: WavLM-SV, UniSpeech-SAT-SV ...)."""

    def __init__(self, checkpoint: str, device: str = "cpu"):
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        try:
            self._features = AutoFeatureExtractor.from_pretrained(checkpoint)
            self._model = AutoModelForAudioXVector.from_pretrained(checkpoint).to(device).eval()
        except Exception as error:  # missing files, no network, not an x-vector model ...
            raise ValueError(
                f"speaker model {checkpoint!r} cannot be loaded as a transformers x-vector model: "
                f"{type(error).__name__}: {error}"
            ) from error
        self.sampling_rate = int(self._features.sampling_rate)
        self.device = device
        self.name = f"{checkpoint} (transformers {importlib.metadata.version('transformers')}, x-vector)"

    def __call__(self, waveform, sampling_rate: int) -> np.ndarray:
        import torch

        audio = resample_audio(np.asarray(waveform, dtype=np.float32), int(sampling_rate), self.sampling_rate)
        _check_speech(audio, self.sampling_rate)
        inputs = self._features(audio, sampling_rate=self.sampling_rate, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return self._model(**inputs).embeddings[0].float().cpu().numpy()


def load_speaker_encoder(name: str | None = None, device: str = "cpu"):
    """`None` or `"resemblyzer"`: the offline default; anything else: a transformers x-vector checkpoint."""
    if name is None or name == RESEMBLYZER:
        return ResemblyzerEncoder(device)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"--speaker-model must be 'resemblyzer' or a transformers checkpoint, got {name!r}")
    return TransformersSpeakerEncoder(name, device)


__all__ = ["RESEMBLYZER", "ResemblyzerEncoder", "TransformersSpeakerEncoder", "cosine", "load_speaker_encoder"]
