"""Audio features for Qwen2.5-Omni: Whisper log-mel spectrograms (128 bins, 16 kHz, 25 ms window, 10 ms hop),
padded to the longest clip of the batch instead of the reference's fixed 300 s."""

import math

import numpy as np
from transformers import WhisperFeatureExtractor
from transformers.utils import logging

from .audio import MAX_AUDIO_SECONDS, THINKER_SAMPLING_RATE

logger = logging.get_logger(__name__)


def default_feature_extractor() -> WhisperFeatureExtractor:
    """The official Qwen2.5-Omni audio front end: 128 mel bins, 16 kHz, n_fft 400, hop 160, 300 s chunks, no dither."""
    return WhisperFeatureExtractor(
        feature_size=128,
        sampling_rate=THINKER_SAMPLING_RATE,
        hop_length=160,
        chunk_length=int(MAX_AUDIO_SECONDS),
        n_fft=400,
        padding_value=0.0,
        dither=0.0,
        return_attention_mask=True,
    )


def extract_audio_features(
    feature_extractor: WhisperFeatureExtractor,
    waveforms: list[np.ndarray],
    padding: str = "longest",
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel features of a batch of 16 kHz mono clips.

    Args:
        feature_extractor: a `WhisperFeatureExtractor` (its `chunk_length` caps a clip's length, 300 s officially).
        waveforms: `(samples,)` float32 clips; longer clips are truncated to `chunk_length` (as the reference does).
        padding: `"longest"`: pad to the longest clip plus one STFT window, so every valid frame sees the same
            zero padding as in the reference's 300 s layout (identical values), then cut to the longest clip's
            frames; `"max_length"`: the reference layout (`chunk_length` seconds, 30000 frames).

    Returns:
        `input_features` `(num_clips, feature_size, frames)` float32 and `feature_attention_mask`
        `(num_clips, frames)` int32 (1 on the `ceil(samples / hop)` valid frames of each clip).
    """
    if padding not in ("longest", "max_length"):
        raise ValueError(f"Audio padding must be 'longest' or 'max_length', got {padding!r}")
    fe = feature_extractor
    waveforms = list(waveforms)
    for i, waveform in enumerate(waveforms):
        if len(waveform) > fe.n_samples:
            logger.warning(
                f"Audio #{i} is {len(waveform) / fe.sampling_rate:.1f} s long: truncated to {fe.chunk_length} s."
            )
            waveforms[i] = waveform[: fe.n_samples]
    longest = max(len(w) for w in waveforms)
    if padding == "max_length":
        target, frames = fe.n_samples, fe.nb_max_frames
    else:
        target = min(fe.n_samples, math.ceil((longest + fe.n_fft) / fe.hop_length) * fe.hop_length)
        frames = min(fe.nb_max_frames, math.ceil(longest / fe.hop_length))
    out = fe(
        waveforms,
        sampling_rate=fe.sampling_rate,
        padding="max_length",
        max_length=target,
        truncation=True,
        return_attention_mask=True,
        return_tensors="np",
    )
    features = np.ascontiguousarray(out["input_features"][..., :frames], dtype=np.float32)
    mask = np.ascontiguousarray(out["attention_mask"][:, :frames])
    return features, mask


__all__ = ["default_feature_extractor", "extract_audio_features"]
