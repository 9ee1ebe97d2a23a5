"""The audio layer: every audio input of omni_hf (processor, speakers, sessions, recipes, the Space) is read, checked,
down-mixed and resampled here, with one set of rules and one clear error per bad input.

- Sources: a path (any container soundfile or PyAV reads, including the audio track of a video file), raw bytes,
  a numpy array / torch tensor (any float dtype, bf16 included) / list, an `(array, rate)` tuple or a `datasets`
  `{"array", "sampling_rate"}` dict.
- Samples: integer PCM is rescaled to [-1, 1]; float samples must already be there (a float array with int16-sized
  values is refused, not silently fed to the model); NaN/inf are refused; channels are averaged.
- Resampling: polyphase (`scipy.signal.resample_poly`). transformers' `audio_utils.load_audio` resamples with soxr,
  which is not numerically the same as the reference pipeline, so only its file-type sniffing is reused.
- Length: `max_seconds` is checked from the file header before decoding; longer input is refused, or cut with a
  visible warning (`truncate=True`) that says what was kept.
"""

import io
import math
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

THINKER_SAMPLING_RATE = 16000  # the Thinker's audio encoder (Whisper features)
AUDIO_SAMPLING_RATE = THINKER_SAMPLING_RATE
TOKEN2WAV_SAMPLING_RATE = 24000  # token2wav's output, reference mels and the speech tokenizer
MAX_AUDIO_SECONDS = 300.0  # the feature extractor's chunk: the longest clip the Thinker hears at once
# Shortest clip that yields one audio token: 3 mel frames of 160 samples (conv stride 2, then pooling by 2).
MIN_AUDIO_SAMPLES = 321
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".gif")
# Files whose audio track can be read: audio files, and video containers (their first audio stream).
AUDIO_TRACK_EXTENSIONS = tuple(dict.fromkeys(AUDIO_EXTENSIONS + VIDEO_EXTENSIONS[:-1]))
# Sampling rates accepted from any header or caller: a declared 50 MHz makes the resampling filter gigabytes.
MIN_SAMPLING_RATE = 1_000
MAX_SAMPLING_RATE = 384_000
# A float signal peaking above this is not [-1, 1] audio: most likely int16 PCM converted without scaling.
MAX_FLOAT_PEAK = 4.0

PathLike = str | os.PathLike


def describe(source: Any) -> str:
    """A short name of an input for error messages: the quoted path, or the array's shape and dtype."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        kind = "array" if isinstance(source, np.ndarray) else type(source).__name__
        return f"<{kind} shape={tuple(source.shape)} dtype={source.dtype}>"
    return f"<{type(source).__name__}>"


def check_file(path: PathLike, kind: str, extensions: tuple[str, ...]) -> str:
    """Existence, non-emptiness and extension checks shared by all file inputs; returns the path as a string."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{kind} file not found: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{kind} input {path!r} is a directory, not a file")
    if not os.path.isfile(path):
        raise ValueError(
            f"{kind} input {path!r} is not a regular file (a device, FIFO or socket): pass {kind.lower()} from a file"
        )
    if os.path.getsize(path) == 0:
        raise ValueError(f"{kind} file {path!r} is empty (0 bytes)")
    ext = Path(path).suffix.lower()
    if ext not in extensions:
        raise ValueError(
            f"Unsupported {kind.lower()} format {ext or '(no extension)'!r} for {path!r}: "
            f"expected one of {', '.join(extensions)}"
        )
    return path


def check_sampling_rate(rate: Any, source: str = "sampling_rate") -> int:
    """A sampling rate as an int, refused (naming `source`) unless it is an integer in
    [`MIN_SAMPLING_RATE`, `MAX_SAMPLING_RATE`] (1 kHz .. 384 kHz)."""
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, np.integer))
        and not (isinstance(rate, (float, np.floating)) and float(rate).is_integer())
    ):
        raise ValueError(f"{source}: the sampling rate must be an integer number of Hz, got {rate!r}")
    if not MIN_SAMPLING_RATE <= int(rate) <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"{source} is at {int(rate)} Hz: sampling rates from {MIN_SAMPLING_RATE} to {MAX_SAMPLING_RATE} Hz are "
            "accepted (the header may be corrupt)"
        )
    return int(rate)


def resample_audio(waveform: np.ndarray, orig_rate: int, target_rate: int = AUDIO_SAMPLING_RATE) -> np.ndarray:
    """Polyphase resampling of a mono `(samples,)` signal; returns float32 `(ceil(samples * target / orig),)`.

    Both rates must lie in [`MIN_SAMPLING_RATE`, `MAX_SAMPLING_RATE`] (the filter grows with the rates)."""
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_rate} -> {target_rate}")
    orig_rate = check_sampling_rate(orig_rate, "The input audio")
    target_rate = check_sampling_rate(target_rate, "target_rate")
    if orig_rate == target_rate:
        return np.asarray(waveform, dtype=np.float32)
    g = math.gcd(orig_rate, target_rate)
    return resample_poly(np.asarray(waveform, dtype=np.float64), target_rate // g, orig_rate // g).astype(np.float32)


def to_mono_float(data: Any, source: str = "<array>") -> np.ndarray:
    """Samples → `(samples,)` float32 mono in [-1, 1].

    Integer PCM is rescaled by its full scale; torch tensors of any float dtype (bf16 included) are converted;
    `(samples, channels)` or `(channels, samples)` (the channel axis is the short one, at most 8) are averaged.

    Raises:
        ValueError: naming `source`: empty, NaN/inf, not numeric, more than 2 dimensions, or float samples far
        outside [-1, 1] (unscaled int16 PCM).
    """
    if hasattr(data, "detach") and hasattr(data, "cpu"):  # torch tensor: bf16/fp16 have no numpy dtype
        data = data.detach().cpu()
        data = data.float().numpy() if data.is_floating_point() else data.numpy()
    # A Python list has no sample format: its numbers are taken as they are (int16-sized values are refused below).
    data = np.asarray(data, dtype=np.float64) if isinstance(data, list) else np.asarray(data)
    if data.dtype.kind == "i":
        data = data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))
    elif data.dtype.kind == "u":
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        data = (data.astype(np.float64) - half) / half
    elif data.dtype.kind == "b" or data.dtype.kind not in "f":
        raise ValueError(f"Audio {source} has dtype {data.dtype}: expected float or integer PCM samples")
    if data.ndim == 2:
        channel_axis = 0 if data.shape[0] <= 8 < data.shape[1] else 1
        data = data.mean(axis=channel_axis)
    elif data.ndim != 1:
        raise ValueError(f"Audio {source} has shape {data.shape}: expected (samples,) or (samples, channels)")
    if data.size == 0:
        raise ValueError(f"Audio {source} is empty (0 samples)")
    if not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ValueError(f"Audio {source} contains {bad} NaN or infinite sample(s)")
    peak = float(np.abs(data).max())
    if peak > MAX_FLOAT_PEAK:
        raise ValueError(
            f"Audio {source} has float samples up to {peak:.0f}: float audio must lie in [-1, 1]. These look like "
            "integer PCM converted without scaling: divide int16 samples by 32768 (or pass the int16 array as is)"
        )
    return data.astype(np.float32)


def check_audio_samples(
    samples: Any, sampling_rate: int | None, expected_rate: int | None = None, source: str | None = None
) -> np.ndarray:
    """Validate streamed or recorded samples (the check `OmniSession.append_audio` runs): returns `(samples,)`
    float32 mono in [-1, 1] (int16 rescaled, bf16 converted, channels averaged).

    Raises:
        ValueError: a rate other than `expected_rate` (when both are given), or bad samples (see `to_mono_float`).
    """
    if sampling_rate is not None and (not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0):
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    if expected_rate is not None and sampling_rate is not None and int(sampling_rate) != int(expected_rate):
        raise ValueError(
            f"Audio {source or describe(samples)} is at {sampling_rate} Hz; {expected_rate} Hz is expected: "
            "resample it first (omni_hf.processing.resample_audio)"
        )
    return to_mono_float(samples, source or describe(samples))


def _wav_shortfall(path: str) -> tuple[float, float] | None:
    """(promised, present) seconds for a RIFF/WAVE file whose data chunk claims more bytes than the file holds."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
        size = os.fstat(handle.fileno()).st_size
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(head):
        chunk, length = head[offset : offset + 4], struct.unpack("<I", head[offset + 4 : offset + 8])[0]
        if chunk == b"fmt " and offset + 16 <= len(head):
            byte_rate = struct.unpack("<I", head[offset + 16 : offset + 20])[0]
        if chunk == b"data":
            present = size - (offset + 8)
            streaming = length in (0, 0xFFFFFFFF)  # written while recording: no size in the header
            if streaming or not byte_rate or present >= length:
                return None
            return length / byte_rate, present / byte_rate
        offset += 8 + length + (length & 1)
    return None


def _decode_with_av(source, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """The first audio stream of a container (path or file object): `(samples, channels)` float32 and its rate."""
    with av.open(source) as container:
        if not container.streams.audio:
            raise ValueError(f"Audio input {name} has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.rate
        if not stream.codec_context.channels or not rate:  # what ffmpeg makes of random bytes named .mp3
            raise ValueError(
                f"Could not decode audio {name}: it is corrupt or not a valid audio file (no channels or no rate "
                "in its header)"
            )
        check_sampling_rate(rate, f"Audio {name}")
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
        limit = None if max_seconds is None else int(max_seconds * rate)
        chunks, total = [], 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
                total += chunks[-1].shape[1]
            if limit is not None and total >= limit:
                break
        else:
            chunks += [out.to_ndarray() for out in resampler.resample(None)]
    data = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)
    return data[:, :limit].T, rate


def probe_audio(source) -> tuple[float, int | None]:
    """(seconds, sampling rate) of an audio or video file (path or file object) from its header, without decoding;
    (0.0, None) for what the header does not say. A file object is left at its start."""
    name = repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else describe(source)
    try:
        with sf.SoundFile(source) as handle:
            return (handle.frames / handle.samplerate if handle.samplerate else 0.0), int(handle.samplerate)
    except Exception:  # not a libsndfile format: ask the container
        pass
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    try:
        with av.open(source) as container:
            streams = container.streams.audio
            rate = int(streams[0].rate or 0) or None if streams else None
            return (container.duration or 0) / 1e6, rate
    except (av.error.FFmpegError, OSError) as error:
        raise ValueError(f"Could not read the header of {name}: {error}") from None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def media_seconds(source: PathLike) -> float:
    """Duration of an audio or video file from its header (no decoding); 0.0 when the header does not say."""
    return probe_audio(os.fspath(source))[0]


def check_duration(seconds: float, source: str, max_seconds: float | None, truncate: bool, what: str = "Audio"):
    """Refuse, or warn about cutting, input longer than `max_seconds`. Returns the seconds to keep (None: all)."""
    if max_seconds is None or seconds <= max_seconds:
        return None
    if not truncate:
        raise ValueError(
            f"{what} {source} lasts {seconds:.1f} s, more than the {max_seconds:g} s the model takes at once: cut it, "
            "or pass truncate=True (the processor's long_audio='truncate') to keep the first "
            f"{max_seconds:g} s"
        )
    warnings.warn(
        f"{what} {source} lasts {seconds:.1f} s: only its first {max_seconds:g} s are kept", UserWarning, stacklevel=3
    )
    return float(max_seconds)


def _read_file(source, name: str, max_seconds: float | None, truncate: bool) -> tuple[np.ndarray, int]:
    """Decode a path or file object: soundfile first, PyAV (any ffmpeg container) as fallback."""
    keep = None
    if isinstance(source, str):
        shortfall = _wav_shortfall(source)
        if shortfall is not None:
            raise ValueError(
                f"Audio file {name} is truncated: its header promises {shortfall[0]:.2f} s but it holds "
                f"{shortfall[1]:.2f} s"
            )
    try:
        seconds, header_rate = probe_audio(source)
    except ValueError:  # unreadable header: decoding below says what is wrong
        seconds, header_rate = 0.0, None
    if header_rate is not None:  # budgets from the header, before decoding
        check_sampling_rate(header_rate, f"Audio {name}")
    keep = check_duration(seconds, name, max_seconds, truncate)
    try:
        with sf.SoundFile(source) as handle:
            rate = handle.samplerate
            frames = -1 if keep is None else int(keep * rate)
            data = handle.read(frames=frames, dtype="float32", always_2d=True)
    except Exception:
        if hasattr(source, "seek"):
            source.seek(0)
        try:
            data, rate = _decode_with_av(source, name, keep)
        except (av.error.FFmpegError, OSError, RuntimeError) as error:  # PyAV's errors subclass ValueError too
            raise ValueError(
                f"Could not decode audio {'file ' if isinstance(source, str) else ''}{name}: it is corrupt or not "
                f"a valid audio file ({error})"
            ) from None
    if check_duration(len(data) / rate, name, max_seconds, truncate) is not None:  # the header did not say
        data = data[: int(max_seconds * rate)]
    return data.mean(axis=1), int(rate)


def decode_audio_track(path: PathLike, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """The audio track of a media file, cut without a warning at `max_seconds` (the caller decided and warned):
    `(samples,)` float32 mono at the file's rate, and that rate."""
    path = os.fspath(path)
    try:
        data, rate = _decode_with_av(path, repr(path), max_seconds)
    except (av.error.FFmpegError, OSError, RuntimeError) as error:  # PyAV's errors subclass ValueError too
        raise ValueError(f"Could not decode the audio track of {path!r} ({error})") from None
    return to_mono_float(data.mean(axis=1), f"track of {path!r}"), int(rate)


def read_audio(
    audio: Any,
    sampling_rate: int | None = None,
    max_seconds: float | None = None,
    truncate: bool = False,
) -> tuple[np.ndarray, int | None]:
    """One audio input → `(samples,)` float32 mono in [-1, 1] at its own rate, and that rate.

    Args:
        audio: see the module docstring. Arrays without a rate get `sampling_rate` (None when not given).
        max_seconds: longest input accepted (checked from the header for files); `truncate=True` keeps the first
            `max_seconds` with a warning instead of refusing.

    Raises:
        FileNotFoundError / IsADirectoryError: missing path or a folder. ValueError: anything else that is wrong,
        naming the input.
    """
    if isinstance(audio, dict) and "array" in audio:
        return read_audio(audio["array"], audio.get("sampling_rate", sampling_rate), max_seconds, truncate)
    if isinstance(audio, dict) and ("bytes" in audio or "path" in audio):  # datasets' undecoded Audio
        return read_audio(audio.get("bytes") or audio.get("path"), sampling_rate, max_seconds, truncate)
    if isinstance(audio, tuple) and len(audio) == 2 and np.isscalar(audio[1]):
        return read_audio(audio[0], int(audio[1]), max_seconds, truncate)
    if isinstance(audio, (str, os.PathLike)):
        path = check_file(audio, "Audio", AUDIO_TRACK_EXTENSIONS)
        data, rate = _read_file(path, repr(path), max_seconds, truncate)
        return to_mono_float(data, repr(path)), rate
    if isinstance(audio, (bytes, bytearray, memoryview, io.IOBase)):
        handle = io.BytesIO(bytes(audio)) if not isinstance(audio, io.IOBase) else audio
        data, rate = _read_file(handle, describe(audio), max_seconds, truncate)
        return to_mono_float(data, describe(audio)), rate
    if isinstance(audio, (list, np.ndarray)) or hasattr(audio, "detach"):
        waveform = to_mono_float(audio, describe(np.asarray(audio) if isinstance(audio, list) else audio))
        if max_seconds is not None and sampling_rate:
            keep = check_duration(len(waveform) / sampling_rate, describe(audio), max_seconds, truncate)
            waveform = waveform if keep is None else waveform[: int(keep * sampling_rate)]
        return waveform, None if sampling_rate is None else int(sampling_rate)
    raise ValueError(
        f"Unsupported audio input {describe(audio)}: expected a file path, bytes, an array or tensor of samples, "
        "an (array, sampling_rate) tuple or a {'array', 'sampling_rate'} dict"
    )


def load_audio(
    audio: Any,
    sampling_rate: int | None = None,
    target_sampling_rate: int = AUDIO_SAMPLING_RATE,
    max_seconds: float | None = None,
    truncate: bool = False,
) -> np.ndarray:
    """One audio input → `(samples,)` float32 mono at `target_sampling_rate` (16 kHz by default).

    Arrays without a rate are taken at `target_sampling_rate`. See `read_audio` for inputs, limits and errors.
    """
    waveform, rate = read_audio(audio, sampling_rate, max_seconds, truncate)
    return resample_audio(waveform, rate or target_sampling_rate, target_sampling_rate)


__all__ = [
    "AUDIO_EXTENSIONS",
    "AUDIO_SAMPLING_RATE",
    "AUDIO_TRACK_EXTENSIONS",
    "MAX_AUDIO_SECONDS",
    "MAX_SAMPLING_RATE",
    "MIN_AUDIO_SAMPLES",
    "MIN_SAMPLING_RATE",
    "THINKER_SAMPLING_RATE",
    "TOKEN2WAV_SAMPLING_RATE",
    "VIDEO_EXTENSIONS",
    "check_audio_samples",
    "check_duration",
    "check_file",
    "check_sampling_rate",
    "decode_audio_track",
    "describe",
    "load_audio",
    "media_seconds",
    "probe_audio",
    "read_audio",
    "resample_audio",
    "to_mono_float",
]
