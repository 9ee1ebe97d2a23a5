"""Playable audio in preference pairs: WAV bytes in `datasets.Audio(decode=False)` columns (`{"bytes", "path"}`),
so a pair dataset saved to disk or pushed to the Hub carries the speech itself, and reading it back needs no audio
decoding backend (soundfile reads the bytes)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..processing.encoding import wav_bytes

AUDIO_COLUMNS = ("chosen_audio", "rejected_audio")


def wav_entry(waveform, sampling_rate: int, name: str) -> dict:
    """A float waveform `(samples,)` → `{"bytes": 16-bit PCM WAV, "path": name}` (an `Audio(decode=False)` value)."""

    return {"bytes": wav_bytes(np.asarray(waveform, dtype=np.float32).reshape(-1), int(sampling_rate)), "path": name}


def file_entry(path: str | os.PathLike) -> dict:
    """An audio file → `{"bytes": its bytes, "path": its name}` (checked to be readable audio first)."""
    read_audio(str(path))
    return {"bytes": Path(path).read_bytes(), "path": Path(path).name}


def read_audio(value, base: str | os.PathLike | None = None, what: str = "audio") -> tuple[np.ndarray, int]:
    """A path (relative to `base`), `{"bytes", "path"}` or `{"array", "sampling_rate"}` → `(mono float32, rate)`."""
    import soundfile

    if isinstance(value, dict) and value.get("array") is not None:
        audio, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    elif isinstance(value, dict) and value.get("bytes"):
        audio, rate = soundfile.read(io.BytesIO(value["bytes"]), dtype="float32")
    else:
        path = value.get("path") if isinstance(value, dict) else value
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ValueError(f"{what}: expected an audio file path or {{'bytes', 'path'}}, got {value!r}")
        path = Path(base, path) if base is not None and not Path(path).is_absolute() else Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{what}: audio file {str(path)!r} does not exist")
        if not path.is_file():
            raise ValueError(
                f"{what}: {str(path)!r} is not a regular file (a folder, device or FIFO): pass an audio file"
            )
        try:
            audio, rate = soundfile.read(str(path), dtype="float32")
        except Exception as error:  # soundfile raises LibsndfileError / RuntimeError for non-audio files
            raise ValueError(f"{what}: {str(path)!r} is not readable audio ({error})") from None
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.size == 0:
        raise ValueError(f"{what}: the audio is empty")
    return audio.astype(np.float32), int(rate)


def cast_audio_columns(dataset):
    """Give the dataset's `chosen_audio` / `rejected_audio` columns the `Audio(decode=False)` feature."""
    from datasets import Audio

    for column in AUDIO_COLUMNS:
        if column in dataset.column_names and not (
            isinstance(dataset.features[column], Audio) and not dataset.features[column].decode
        ):
            dataset = dataset.cast_column(column, Audio(decode=False))
    return dataset


__all__ = ["AUDIO_COLUMNS", "cast_audio_columns", "file_entry", "read_audio", "wav_entry"]
