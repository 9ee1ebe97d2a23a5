"""Media on the wire: pcm16 and WAV bytes, base64, data URLs, and streaming resampling.

Every server path (chat completions, realtime, the Space) encodes and decodes audio here, with one convention:

- **pcm16**: little-endian signed 16-bit samples, full scale 32768: `int16 = clip(round(x * 32768), -32768, 32767)`
  and `x = int16 / 32768` (so decoding then encoding gives the same bytes back). This is how libsndfile reads 16-bit
  files, how `processing.audio` rescales int16 arrays, and what the Space's browser code sends and plays.
- **rates**: the Thinker hears 16 kHz (`THINKER_SAMPLING_RATE`); speech comes out at 24 kHz
  (`TOKEN2WAV_SAMPLING_RATE`), which is also the rate of raw pcm16 in and out of the API (`PCM16_RATE`).
- **data URLs**: `data:<type>/<subtype>;base64,<data>`; the declared type is checked against what the bytes are.

Example:

```python
>>> from omni_hf.processing.encoding import float_to_pcm16, pcm16_to_float
>>> pcm16_to_float(float_to_pcm16(np.array([0.5, -1.0], np.float32)))
array([ 0.5, -1. ], dtype=float32)
```
"""

import base64
import binascii
import io
import re
from math import gcd

import numpy as np
import soundfile
from scipy.signal import firwin, lfilter

from .audio import THINKER_SAMPLING_RATE, TOKEN2WAV_SAMPLING_RATE, check_sampling_rate

PCM16_RATE = TOKEN2WAV_SAMPLING_RATE  # raw pcm16 in and out of the API (realtime, chat completions)
PCM16_FULL_SCALE = 32768.0
OUTPUT_FORMATS = ("pcm16", "wav")


class MediaError(ValueError):
    """Bad media from a client: `param` names the field (e.g. `messages[0].content[1].image_url.url`); `status` is
    the HTTP status a server answers with (400, or 413 for input over a size or duration budget)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


# ------------------------------------------------------------------------------------------------------------ pcm16


def pcm16_samples(samples: np.ndarray) -> np.ndarray:
    """float samples `(n,)` in [-1, 1] → int16 `(n,)` (rounded, clipped to the int16 range), e.g. for soundfile."""
    scaled = np.round(np.asarray(samples, dtype=np.float64).reshape(-1) * PCM16_FULL_SCALE)
    return np.clip(scaled, -32768, 32767).astype("<i2")


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float samples `(n,)` in [-1, 1] → little-endian 16-bit PCM bytes (rounded, clipped to the int16 range)."""
    return pcm16_samples(samples).tobytes()


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Little-endian 16-bit PCM bytes → float32 `(n,)` in [-1, 1)."""
    if len(data) % 2:
        raise ValueError(f"pcm16 audio must have an even number of bytes, got {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(PCM16_FULL_SCALE)


def wav_bytes(audio: np.ndarray, sampling_rate: int = PCM16_RATE) -> bytes:
    """float32 `(samples,)` → a complete 16-bit PCM WAV file holding the same samples as `float_to_pcm16`."""
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm16_samples(audio), sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def encode_audio(audio: np.ndarray, audio_format: str) -> bytes:
    """Reply audio in `audio_format`: `pcm16` (raw 24 kHz mono samples) or `wav` (a WAV file)."""
    if audio_format == "pcm16":
        return float_to_pcm16(audio)
    if audio_format == "wav":
        return wav_bytes(audio)
    raise ValueError(f"Unsupported audio format {audio_format!r}; use one of {OUTPUT_FORMATS}")


def audio_b64(samples: np.ndarray) -> str:
    """float samples → base64 pcm16 (the realtime `audio` field)."""
    return base64.b64encode(float_to_pcm16(samples)).decode("ascii")


# ------------------------------------------------------------------------------------------------ base64, data URLs


def b64decode_strict(data: str, what: str, max_bytes: int | None = None) -> bytes:
    """Decode standard base64 or raise a `MediaError` naming `what`; over `max_bytes` is a 413, checked on the
    base64 text before decoding it."""
    if not isinstance(data, str):
        raise MediaError(f"{what} must be a base64 string, got {type(data).__name__}", what)
    if max_bytes is not None and len(data) * 3 // 4 > max_bytes + 3:
        raise MediaError(
            f"{what}: upload of about {len(data) * 3 // 4} bytes is over the limit of {max_bytes}", what, 413
        )
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise MediaError(f"{what} is not valid base64 ({error})", what) from None
    if max_bytes is not None and len(decoded) > max_bytes:
        raise MediaError(f"{what}: upload of {len(decoded)} bytes is over the limit of {max_bytes}", what, 413)
    return decoded


_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w=.+-]+)*);base64,(?P<data>.*)$", re.S)
_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*):")
# Subtypes that name the same format.
_ALIASES = {"jpg": "jpeg", "pjpeg": "jpeg", "x-png": "png", "tif": "tiff", "x-ms-bmp": "bmp", "x-bmp": "bmp",
            "x-wav": "wav", "wave": "wav", "vnd.wave": "wav", "x-flac": "flac", "mpeg": "mp3", "x-matroska": "webm",
            "quicktime": "mov", "x-msvideo": "avi", "x-m4v": "mp4"}  # fmt: skip


def sniff_media(data: bytes) -> tuple[str, str] | None:
    """(kind, format) of media bytes from their magic numbers, e.g. `("image", "png")`; None when unknown."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "avi"
    if head.startswith(b"BM"):
        return "image", "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "tiff"
    if head.startswith(b"fLaC"):
        return "audio", "flac"
    if head.startswith(b"OggS"):
        return "audio", "ogg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio", "mp3"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "webm"
    if head[4:8] == b"ftyp":
        return ("audio", "m4a") if head[8:11] == b"M4A" else ("video", "mp4")
    return None


def url_scheme(url: str) -> str | None:
    """The lower-cased scheme of a URL (`"https"`, `"ftp"`, `"data"`, `"file"`), or None for a plain path."""
    match = _SCHEME.match(url)
    if match is None or len(match.group("scheme")) == 1:  # "C:\\..." is a Windows path, not a scheme
        return None
    return match.group("scheme").lower()


def parse_data_url(url: str, kind: str, where: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a base64 data URL holding `kind` media ("image", "video" or "audio").

    The declared type must be of that kind and, when the bytes are a format we recognise, match it (a PNG declared
    as `image/jpeg` is refused, as is WAV audio sent as `image/png`). `max_bytes` is checked on the base64 text
    before decoding it.

    Raises:
        MediaError: naming `where`: not a base64 data URL, over `max_bytes` (status 413), or a type mismatch.
    """
    match = _DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise MediaError(f"{where} is not a base64 data URL (data:{kind}/...;base64,...)", where)
    data = b64decode_strict(match.group("data"), where, max_bytes)
    mime = (match.group("mime") or "").lower()
    declared_kind, _, subtype = mime.partition("/")
    if mime and declared_kind != kind and mime != "application/octet-stream":
        raise MediaError(f"{where} declares {mime!r}, but {kind} data is expected here", where)
    sniffed = sniff_media(data)
    if sniffed is not None and sniffed[0] != kind and not (kind == "video" and sniffed[0] == "audio"):
        raise MediaError(
            f"{where} declares {mime or 'no type'} but holds {sniffed[0]} data ({sniffed[1]}): send {kind} data here",
            where,
        )
    declared = _ALIASES.get(subtype, subtype)
    if sniffed is not None and declared and declared_kind == kind and sniffed[0] == kind and declared != sniffed[1]:
        if not (kind == "video" and {declared, sniffed[1]} <= {"mp4", "mov", "m4a"}):  # one container family
            raise MediaError(f"{where} declares {mime!r} but the data is {sniffed[1]}: fix the declared type", where)
    return data


def refuse_remote(url: str, where: str, local_paths: bool) -> None:
    """Refuse a URL the server will not fetch (any scheme but `file://`, in any letter case), saying so."""
    scheme = url_scheme(url)
    if scheme not in (None, "file", "data"):
        raise MediaError(
            f"{where}: {scheme}:// URLs are not fetched by this server; send the media inline as a base64 data URL",
            where,
        )
    if not local_paths:
        raise MediaError(
            f"{where}: local file paths are disabled on this server (see --allow-media-dir); send a base64 data URL",
            where,
        )


# ------------------------------------------------------------------------------------------------ streaming resample


class StreamingResampler:
    """Resampling of a stream (e.g. realtime's 24 kHz → the Thinker's 16 kHz); packet sizes do not change the output.

    Zero-stuffs by `up`, applies `resample_poly`'s Kaiser FIR with its state carried between calls, keeps every
    `down`-th sample. Causal, so the output lags the input by half the filter (under 1 ms for 24 → 16 kHz).
    """

    def __init__(self, source_rate: int = PCM16_RATE, target_rate: int = THINKER_SAMPLING_RATE):
        check_sampling_rate(source_rate, "source_rate")
        check_sampling_rate(target_rate, "target_rate")
        g = gcd(source_rate, target_rate)
        self.up, self.down = target_rate // g, source_rate // g
        taps = 2 * 10 * max(self.up, self.down) + 1
        self.taps = firwin(taps, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
        self.state = np.zeros(taps - 1)
        self.phase = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next samples `(n,)`; returns float32 `(m,)`."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        if self.up == self.down == 1:
            return samples.astype(np.float32)
        stuffed = np.zeros(samples.size * self.up)
        stuffed[:: self.up] = samples
        filtered, self.state = lfilter(self.taps, 1.0, stuffed, zi=self.state)
        out = filtered[self.phase :: self.down]
        self.phase = (self.phase - stuffed.size) % self.down
        return out.astype(np.float32)


__all__ = [
    "OUTPUT_FORMATS",
    "PCM16_FULL_SCALE",
    "PCM16_RATE",
    "MediaError",
    "StreamingResampler",
    "audio_b64",
    "b64decode_strict",
    "encode_audio",
    "float_to_pcm16",
    "parse_data_url",
    "pcm16_samples",
    "pcm16_to_float",
    "refuse_remote",
    "sniff_media",
    "url_scheme",
    "wav_bytes",
]
