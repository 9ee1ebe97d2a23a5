"""Audio in and out of the API: float32 PCM ↔ PCM16 / WAV bytes, and base64 uploads → arrays."""

import base64
import binascii
import io

import numpy as np
import soundfile

OUTPUT_FORMATS = ("pcm16", "wav")
OUTPUT_RATE = 24000


def pcm16_bytes(audio: np.ndarray) -> bytes:
    """float32 `(samples,)` in [-1, 1] → little-endian 16-bit PCM bytes (clipped)."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM bytes → float32 `(samples,)`."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767.0


def wav_bytes(audio: np.ndarray, sampling_rate: int = OUTPUT_RATE) -> bytes:
    """float32 `(samples,)` → a complete 16-bit PCM WAV file (the same samples as `pcm16_bytes`)."""
    buffer = io.BytesIO()
    samples = np.frombuffer(pcm16_bytes(audio), dtype="<i2")
    soundfile.write(buffer, samples, sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def encode_audio(audio: np.ndarray, audio_format: str) -> bytes:
    """The reply audio in `audio_format` (`pcm16`: raw 24 kHz mono samples; `wav`: a WAV file)."""
    if audio_format == "pcm16":
        return pcm16_bytes(audio)
    if audio_format == "wav":
        return wav_bytes(audio)
    raise ValueError(f"Unsupported audio format {audio_format!r}; use one of {OUTPUT_FORMATS}")


def b64decode_strict(data: str, what: str) -> bytes:
    """Decode standard base64 or raise a ValueError naming `what`."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"{what} is not valid base64 ({error})") from None


def decode_audio_upload(data: bytes, audio_format: str, what: str) -> tuple[np.ndarray, int]:
    """An `input_audio` upload (`wav`, `mp3`, `flac`, `ogg`, or raw `pcm16` at 24 kHz) → (mono float32, rate)."""
    if audio_format == "pcm16":
        if len(data) % 2:
            raise ValueError(f"{what}: pcm16 data must have an even number of bytes")
        return pcm16_to_float(data), OUTPUT_RATE
    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as error:  # noqa: BLE001 - libsndfile raises several types
        raise ValueError(f"{what} could not be decoded as {audio_format} audio ({error})") from None
    if audio.shape[0] == 0:
        raise ValueError(f"{what} holds no audio samples")
    return audio.mean(axis=1), int(rate)


__all__ = [
    "OUTPUT_FORMATS",
    "OUTPUT_RATE",
    "b64decode_strict",
    "decode_audio_upload",
    "encode_audio",
    "pcm16_bytes",
    "pcm16_to_float",
    "wav_bytes",
]
