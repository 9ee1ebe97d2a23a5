"""OpenAI content parts, parsed in one place for chat completions, realtime items and the processor.

`parse_content_part` checks one part's shape and returns a `ContentPart`; the `decode_*` helpers turn its media into
what the processor takes, with every budget checked from the header before decoding (sample rate, seconds, pixels,
video seconds). Errors are `MediaError`s naming the part (`where`) and, for budgets, carrying status 413.

Shapes accepted (`api`):
- `"chat"` (`POST /v1/chat/completions`): `text`, `image_url` (`{"url"}`), `video_url` (`{"url"}`), `input_audio`
  (`{"data": base64, "format"}`); unknown fields are refused, as OpenAI does.
- `"realtime"` (`conversation.item.create`): `input_text` / `text`, `input_audio` (`{"audio": base64 pcm16}`),
  `input_image` (`{"image_url": data URL}`).
- `"processor"` (`OmniProcessor.apply_chat_template`): the chat shapes, plus omni_hf's own `image` / `audio` /
  `video` blocks and `{"text": ...}` without a type.
"""

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import check_sampling_rate, probe_audio, read_audio
from .encoding import PCM16_RATE, MediaError, pcm16_to_float, url_scheme
from .media import MAX_DECODE_PIXELS, check_decode_pixels, load_image

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "pcm16")
PART_TYPES = {
    "chat": ("text", "image_url", "video_url", "input_audio"),
    "realtime": ("input_text", "text", "input_audio", "input_image"),
    "processor": ("text", "image", "audio", "video", "image_url", "video_url", "input_audio"),
}
_FIELDS = {"text": {"text"}, "image_url": {"image_url"}, "video_url": {"video_url"}, "input_audio": {"input_audio"}}


@dataclass(frozen=True)
class ContentPart:
    """One checked content part.

    Attributes:
        kind: "text", "image", "audio" or "video" (the processor's block types).
        text: the text of a text part.
        url: an image or video: a data URL, a path or a `file://` URL (not fetched: see `encoding.refuse_remote`).
        data: audio: base64 bytes (`format` says which: wav, mp3, flac, ogg, or raw 24 kHz pcm16).
        format: the audio format.
    """

    kind: str
    text: str | None = None
    url: str | None = None
    data: str | None = None
    format: str | None = None


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _typename(value) -> str:
    return "null" if value is None else type(value).__name__


def parse_content_part(
    part: Any, where: str, api: str = "chat", max_text_chars: int | None = None
) -> ContentPart | None:
    """Check one content part's shape (no decoding). Returns None for omni_hf's own `image` / `audio` / `video`
    blocks (`api="processor"`), which the processor reads as they are. A text over `max_text_chars` is refused
    (status 413) before anything tokenizes it.

    Raises:
        MediaError: naming `where`: not an object, an unknown type, a missing or mistyped field.
    """
    types = PART_TYPES[api]
    if not isinstance(part, dict):
        raise MediaError(f"{where} must be an object like {{'type': 'text', 'text': ...}}, got {_short(part)}", where)
    kind = part.get("type")
    if kind is None and api == "processor" and "text" in part:
        kind = "text"
    if kind not in types:
        raise MediaError(
            f"{where} has type {kind!r}, which is not supported: use {', '.join(types)} parts ({_short(part)})", where
        )
    if api == "chat":
        unknown = sorted(set(part) - {"type"} - _FIELDS[kind])
        if unknown:
            raise MediaError(f"{where}: unknown field {unknown[0]!r} in a {kind} part", f"{where}.{unknown[0]}")
    if kind in ("text", "input_text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise MediaError(f"{where} is a text block without a 'text' string (got {_typename(text)})", where)
        if max_text_chars is not None and len(text) > max_text_chars:
            message = f"{where}: text of {len(text)} characters is over the {max_text_chars} accepted"
            raise MediaError(message, where, 413)
        return ContentPart("text", text=text)
    if kind in ("image", "audio", "video"):
        return None
    if kind in ("image_url", "video_url"):
        value = part.get(kind)
        url = value.get("url") if isinstance(value, dict) else value if api == "processor" else None
        if isinstance(value, dict) and api == "chat":
            extra = sorted(set(value) - {"url", "detail"})
            if extra:
                raise MediaError(f"{where}: unknown field {extra[0]!r} in {kind}", f"{where}.{kind}.{extra[0]}")
            if value.get("detail") is not None and not isinstance(value.get("detail"), str):
                raise MediaError(f"{where}.{kind}.detail must be a string", f"{where}.{kind}.detail")
        if not isinstance(url, str) or not url:
            raise MediaError(
                f"{where}.{kind} must be an object {{'url': 'data:...;base64,...'}}, got {_short(value)}",
                f"{where}.{kind}",
            )
        return ContentPart(kind.removesuffix("_url"), url=url)
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or url_scheme(url) != "data":
            raise MediaError(
                f"{where}.image_url must be a data URL (data:image/png;base64,...); the server fetches no remote URLs",
                f"{where}.image_url",
            )
        return ContentPart("image", url=url)
    # input_audio
    if api == "realtime":
        data = part.get("audio")
        if not isinstance(data, str):
            raise MediaError(f"{where}.audio must be a base64 string of pcm16 audio", f"{where}.audio")
        return ContentPart("audio", data=data, format="pcm16")
    value = part.get("input_audio")
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise MediaError(
            f"{where}: an input_audio part needs {{'input_audio': {{'data': base64, 'format': "
            f"{'|'.join(AUDIO_FORMATS)}}}}}, got {_short(value)}",
            f"{where}.input_audio",
        )
    if api == "chat":
        extra = sorted(set(value) - {"data", "format"})
        if extra:
            raise MediaError(f"{where}: unknown field {extra[0]!r} in input_audio", f"{where}.input_audio.{extra[0]}")
    audio_format = value.get("format", "wav")
    if audio_format not in AUDIO_FORMATS:
        raise MediaError(
            f"{where}.input_audio.format must be one of {', '.join(AUDIO_FORMATS)}, got {_short(audio_format)}",
            f"{where}.input_audio.format",
        )
    return ContentPart("audio", data=value["data"], format=audio_format)


def parse_content(content: Any, where: str, api: str = "chat") -> str | list[ContentPart | None]:
    """A message's `content`: a string, or a list of parts (each parsed by `parse_content_part`)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, (list, tuple)):
        raise MediaError(
            f"{where} must be a string or a list of content parts ({', '.join(PART_TYPES[api])}), got "
            f"{_typename(content)}",
            where,
        )
    return [parse_content_part(part, f"{where}[{i}]", api) for i, part in enumerate(content)]


# ------------------------------------------------------------------------------------------------------ decoding


def decode_audio_data(
    data: bytes, audio_format: str, where: str, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Audio bytes → (float32 mono `(samples,)`, rate). Raw pcm16 is 24 kHz; a file's sample rate and duration are
    checked from its header before anything is decoded.

    Raises:
        MediaError: undecodable (400), a sample rate outside 1 kHz .. 384 kHz (400), longer than `max_seconds` (413).
    """

    def too_long(seconds):
        return MediaError(f"{where}: audio of {seconds:.1f} s is longer than the limit {max_seconds:g} s", where, 413)

    if audio_format == "pcm16":
        try:
            samples = pcm16_to_float(data)
        except ValueError as error:
            raise MediaError(f"{where}: {error}", where) from None
        if max_seconds is not None and samples.size / PCM16_RATE > max_seconds:
            raise too_long(samples.size / PCM16_RATE)
        return samples, PCM16_RATE
    handle = io.BytesIO(data)
    try:
        seconds, rate = probe_audio(handle)
        if rate is not None:
            check_sampling_rate(rate, f"{where} ({audio_format} audio)")
    except ValueError as error:
        raise MediaError(str(error), where) from None
    if max_seconds is not None and seconds > max_seconds:
        raise too_long(seconds)
    try:
        audio, rate = read_audio(handle, max_seconds=None)
    except ValueError as error:
        raise MediaError(f"{where} could not be decoded as {audio_format} audio ({error})", where) from None
    if max_seconds is not None and audio.shape[0] / rate > max_seconds:  # the header did not say
        raise too_long(audio.shape[0] / rate)
    return audio, int(rate)


def decode_image_data(data: bytes, where: str, max_pixels: int | None = MAX_DECODE_PIXELS):
    """Image bytes → an RGB PIL image; its size is checked from the header first (a 168 KB PNG can declare
    12000 x 12000 pixels).

    Raises:
        MediaError: more than `max_pixels` (413), or not a readable image (400).
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as opened:
            check_decode_pixels(opened.height, opened.width, f"{where}: the image", max_pixels)
    except MediaError:
        raise
    except ValueError as error:
        raise MediaError(str(error), where, 413) from None
    except Exception as error:  # noqa: BLE001 - Pillow raises several types
        raise MediaError(f"{where}: not a readable image ({error})", where) from None
    try:
        image = load_image(bytes(data), min_side=1, max_decode_pixels=max_pixels)
    except ValueError as error:
        raise MediaError(f"{where}: not a readable image ({error})", where) from None
    return image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(image).convert("RGB")


def check_video_file(path: str | os.PathLike, where: str, max_seconds: float | None = None,
                     max_pixels: int | None = MAX_DECODE_PIXELS) -> float:  # fmt: skip
    """Duration and frame size of a video file from its container header (nothing decoded); returns the seconds.

    Raises:
        MediaError: not a video (400), frames over `max_pixels` or longer than `max_seconds` (413).
    """
    import av

    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{where}: the file has no video stream", where)
            stream = container.streams.video[0]
            seconds = (container.duration or 0) / 1e6
            if stream.duration and stream.time_base:
                seconds = max(seconds, float(stream.duration * stream.time_base))
            height, width = stream.codec_context.height, stream.codec_context.width
    except MediaError:
        raise
    except Exception as error:  # noqa: BLE001 - PyAV raises several types
        raise MediaError(f"{where}: not a readable video ({type(error).__name__})", where) from None
    try:
        check_decode_pixels(height, width, f"{where}: the video's frames", max_pixels)
    except ValueError as error:
        raise MediaError(str(error), where, 413) from None
    if max_seconds is not None and seconds > max_seconds:
        raise MediaError(f"{where}: video of {seconds:.1f} s is longer than the limit {max_seconds:g} s", where, 413)
    return seconds


__all__ = [
    "AUDIO_FORMATS",
    "PART_TYPES",
    "ContentPart",
    "check_video_file",
    "decode_audio_data",
    "decode_image_data",
    "parse_content",
    "parse_content_part",
]
