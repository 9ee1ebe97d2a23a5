"""Custom speakers from a reference clip: the DiT's reference mel, its x-vector, and the Talker's bos entry.

What each part of a `Speaker` carries, and where a new one comes from:
- `ref_mel` (the timbre the DiT's own ECAPA speaker encoder reads): the clip's 24 kHz, 80-bin log-mel
  (`omni_hf.token2wav.mel`), after the clip rule below.
- `cond` (a 192-dim x-vector): Qwen's x-vector model is not released (its size matches CosyVoice's CAM++). The
  offline default keeps the base speaker's x-vector, so the new timbre comes through `ref_mel`; pass
  `speaker_encoder=` (a callable `(waveform_24k, 24000) -> (enc_emb_dim,)`, e.g. a CAM++ wrapper) to compute one.
- `bos_token_id` (the Talker's voice entry): the base speaker's by default (its prosody), or an id whose embedding a
  voice fine-tune has trained.

Clip rule: mono, resampled to 24 kHz, leading and trailing silence trimmed (10 ms frames quieter than
`silence_db` below the loudest), then the first `max_seconds` (4 s, like the official 300–400 frame reference mels);
under `min_seconds` of sound (or silent, or not finite) is refused.
"""

from collections.abc import Callable

import numpy as np
import torch

from ..processing.audio import describe, read_audio, resample_audio
from ..token2wav.mel import MelSettings, log_mel_spectrogram
from .speakers import Speaker

MEL = MelSettings()


def load_reference_audio(reference_audio, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """A path (any audio file, or a video's audio track), bytes, or an array / tensor (int16 rescaled, bf16
    converted) → `(samples,)` float32 mono in [-1, 1] and its sampling rate (`omni_hf.processing.audio`)."""
    audio, rate = read_audio(reference_audio, sampling_rate)
    if rate is None:
        raise ValueError(f"Pass sampling_rate with reference audio {describe(reference_audio)}")
    return audio, rate


def prepare_reference_audio(
    audio: np.ndarray,
    sampling_rate: int,
    max_seconds: float = 4.0,
    min_seconds: float = 0.5,
    silence_db: float = -40.0,
) -> np.ndarray:
    """Apply the clip rule (module docstring): returns `(samples,)` float32 at 24 kHz."""
    if not max_seconds > 0 or not min_seconds <= max_seconds:
        raise ValueError(
            f"max_seconds must be positive and at least min_seconds={min_seconds}, got max_seconds={max_seconds}"
        )
    if audio.size == 0 or not np.isfinite(audio).all():
        raise ValueError("Reference audio is empty or contains NaN/inf samples")
    audio = resample_audio(audio, sampling_rate, MEL.sampling_rate)
    frame = MEL.sampling_rate // 100
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) if len(frames) else np.zeros(0)
    if not len(rms) or rms.max() < 1e-4:
        raise ValueError("Reference audio is silent (no sound above -80 dBFS)")
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (silence_db / 20))
    audio = audio[loud[0] * frame : (loud[-1] + 1) * frame]
    if len(audio) < min_seconds * MEL.sampling_rate:
        raise ValueError(
            f"Reference audio has {len(audio) / MEL.sampling_rate:.2f} s of sound after trimming silence; "
            f"at least {min_seconds} s is needed"
        )
    return audio[: int(max_seconds * MEL.sampling_rate)]


def build_speaker(
    reference_audio,
    name: str,
    base: Speaker,
    sampling_rate: int | None = None,
    speaker_encoder: Callable[[np.ndarray, int], torch.Tensor] | None = None,
    bos_token_id: int | None = None,
    max_seconds: float = 4.0,
) -> Speaker:
    """A new `Speaker` from a reference clip (a path, or an array with `sampling_rate`).

    Args:
        base: the speaker whose x-vector and bos entry are kept unless `speaker_encoder` / `bos_token_id` are given.
        speaker_encoder: computes the x-vector `(enc_emb_dim,)` from the prepared 24 kHz clip.
        max_seconds: longest reference kept (the first seconds of sound).
    """
    if not isinstance(name, str) or not name.strip() or "." in name:
        raise ValueError(f"Speaker name must be a non-empty string without '.', got {name!r}")
    audio, rate = load_reference_audio(reference_audio, sampling_rate)
    clip = prepare_reference_audio(audio, rate, max_seconds=max_seconds)
    ref_mel = log_mel_spectrogram(torch.from_numpy(clip), MEL)
    cond = base.speaker_embedding.clone()
    if speaker_encoder is not None:
        cond = torch.as_tensor(speaker_encoder(clip, MEL.sampling_rate), dtype=torch.float32).reshape(1, -1)
        if cond.shape != base.speaker_embedding.shape:
            raise ValueError(
                f"speaker_encoder returned {tuple(cond.shape[1:])} values; the DiT expects {base.speaker_embedding.shape[1]}"
            )
    return Speaker(name, base.bos_token_id if bos_token_id is None else bos_token_id, cond, ref_mel)


__all__ = ["build_speaker", "load_reference_audio", "prepare_reference_audio"]
