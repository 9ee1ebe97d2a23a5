"""Request models of `POST /v1/chat/completions` (the OpenAI audio API subset we serve) and their validation.

Unknown fields are rejected (an OpenAI-style 400 naming the field), as are malformed media, too many media, and
uploads over the limits, all before any model work. `to_conversation` turns the OpenAI content parts into the
`OmniProcessor` conversation (`text`, `audio` arrays, `image` PIL images, `video` files).
"""

import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .audio_encoding import OUTPUT_FORMATS, b64decode_strict, decode_audio_upload


class RequestError(ValueError):
    """A client error: HTTP `status`, OpenAI `type`/`code` and the offending `param`."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


@dataclass
class ServerLimits:
    """Input limits, checked before any model work (sizes in bytes, durations in seconds)."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_media_bytes: int = 16 * 1024 * 1024
    max_media_items: int = 4
    max_audio_seconds: float = 300.0
    max_messages: int = 64
    max_tokens: int = 1024
    talker_max_new_tokens: int = 4096
    timeout: float = 300.0
    allowed_media_dir: str | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class InputAudio(_Strict):
    data: str
    format: Literal["wav", "mp3", "flac", "ogg", "pcm16"] = "wav"


class InputAudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class MediaURL(_Strict):
    url: str
    detail: str | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: MediaURL


class VideoPart(_Strict):
    type: Literal["video_url"]
    video_url: MediaURL


ContentPart = Annotated[TextPart | InputAudioPart | ImagePart | VideoPart, Field(discriminator="type")]


class ToolCallFunction(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant: the calls it made (see `omni_hf.serving.tools`)
    tool_call_id: str | None = None  # tool: the call this is the output of


class AudioOptions(_Strict):
    voice: str
    format: str = "pcm16"


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    """The fields we serve; `voice_adapter` (an extra field, e.g. `extra_body` in the openai client) selects a
    loaded LoRA voice adapter for this request."""

    model: str
    messages: list[Message] = Field(min_length=1)
    modalities: list[Literal["text", "audio"]] = ["text"]
    audio: AudioOptions | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    user: str | None = None
    voice_adapter: str | None = None
    tools: list[dict] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict | None = None
    parallel_tool_calls: bool | None = None

    @property
    def speaks(self) -> bool:
        return "audio" in self.modalities


def check_request(request: ChatCompletionRequest, speakers: list[str], adapters: list[str], limits: ServerLimits):
    """Semantic checks the schema cannot express; raises `RequestError` naming the field."""
    if request.speaks:
        if request.audio is None:
            raise RequestError('modalities includes "audio": pass audio={"voice": ..., "format": ...}', "audio")
        if request.audio.voice not in speakers:
            raise RequestError(
                f"Unknown voice {request.audio.voice!r}; this model's voices: {', '.join(speakers)}", "audio.voice"
            )
        if request.audio.format not in OUTPUT_FORMATS:
            raise RequestError(
                f"Unsupported audio format {request.audio.format!r}; use one of {', '.join(OUTPUT_FORMATS)}",
                "audio.format",
            )
    if request.voice_adapter is not None and request.voice_adapter not in adapters:
        known = ", ".join(adapters) or "none loaded"
        raise RequestError(f"Unknown voice adapter {request.voice_adapter!r}; loaded: {known}", "voice_adapter")
    if len(request.messages) > limits.max_messages:
        raise RequestError(f"Too many messages ({len(request.messages)} > {limits.max_messages})", "messages")
    media = sum(
        not isinstance(part, TextPart)
        for message in request.messages
        if isinstance(message.content, list)
        for part in message.content
    )
    if media > limits.max_media_items:
        raise RequestError(f"Too many media parts ({media} > {limits.max_media_items})", "messages")
    tokens = request.max_completion_tokens or request.max_tokens
    if tokens is not None and tokens > limits.max_tokens:
        raise RequestError(f"max_tokens {tokens} is above this server's limit {limits.max_tokens}", "max_tokens")


_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=-]+)*;base64,(?P<data>.*)$", re.DOTALL)


def tool_message(message: Message, i: int) -> dict:
    """A `tool` message (a function's output) as the user turn `<tool_response>...</tool_response>`, an assistant
    message with `tool_calls` as its text followed by each `<tool_call>` block."""
    from .tools import render_tool_call, render_tool_response

    content = message.content
    if content is not None and not isinstance(content, str):
        texts = [p.text for p in content if isinstance(p, TextPart)]
        if len(texts) != len(content):
            raise RequestError("tool messages and tool calls take text content only", f"messages[{i}].content")
        content = "".join(texts)
    if message.role == "tool":
        return {"role": "user", "content": [{"type": "text", "text": render_tool_response(content or "")}]}
    if message.role != "assistant":
        raise RequestError("only assistant messages carry tool_calls", f"messages[{i}].tool_calls")
    calls = [render_tool_call(c.function.name, c.function.arguments) for c in message.tool_calls]
    text = "\n".join(([content] if content else []) + calls)
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


class ConversationBuilder:
    """Turn validated messages into an `OmniProcessor` conversation; owns temporary video files (`close()`)."""

    def __init__(self, limits: ServerLimits):
        self.limits = limits
        self._temp = tempfile.TemporaryDirectory(prefix="omni-hf-serve-")

    def close(self) -> None:
        self._temp.cleanup()

    def __call__(self, messages: list[Message]) -> list[dict]:
        conversation = []
        for i, message in enumerate(messages):
            role = "system" if message.role == "developer" else message.role
            if message.role == "tool" or message.tool_calls:  # rendered as Qwen2.5 prompts tools
                conversation.append(tool_message(message, i))
                continue
            if message.content is None:
                raise RequestError("content is required (null only for an assistant message with tool_calls)",
                                   f"messages[{i}].content")  # fmt: skip
            if isinstance(message.content, str):
                conversation.append({"role": role, "content": [{"type": "text", "text": message.content}]})
                continue
            blocks = []
            for j, part in enumerate(message.content):
                where = f"messages[{i}].content[{j}]"
                try:
                    blocks.append(self._block(part, where))
                except RequestError:
                    raise
                except ValueError as error:
                    raise RequestError(str(error), where) from None
            conversation.append({"role": role, "content": blocks})
        return conversation

    def _block(self, part, where: str) -> dict:
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        if isinstance(part, InputAudioPart):
            data = self._sized(b64decode_strict(part.input_audio.data, f"{where}.input_audio.data"), where)
            audio, rate = decode_audio_upload(data, part.input_audio.format, f"{where}.input_audio")
            if audio.shape[0] / rate > self.limits.max_audio_seconds:
                raise RequestError(
                    f"{where}: audio of {audio.shape[0] / rate:.1f} s is longer than the limit "
                    f"{self.limits.max_audio_seconds:g} s",
                    where,
                    status=413,
                )
            return {"type": "audio", "audio": audio, "sampling_rate": rate}
        if isinstance(part, ImagePart):
            from PIL import Image

            data = self._url_bytes(part.image_url.url, f"{where}.image_url.url")
            if isinstance(data, Path):
                return {"type": "image", "image": str(data)}
            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except Exception as error:  # noqa: BLE001 - PIL raises several types
                raise RequestError(f"{where}.image_url: not a readable image ({error})", where) from None
            return {"type": "image", "image": image.convert("RGB")}
        data = self._url_bytes(part.video_url.url, f"{where}.video_url.url")
        if isinstance(data, Path):
            return {"type": "video", "video": str(data)}
        path = Path(self._temp.name) / f"video{len(list(Path(self._temp.name).iterdir()))}.mp4"
        path.write_bytes(data)
        return {"type": "video", "video": str(path)}

    def _sized(self, data: bytes, where: str) -> bytes:
        if len(data) > self.limits.max_media_bytes:
            raise RequestError(
                f"{where}: upload of {len(data)} bytes is over the limit of {self.limits.max_media_bytes}",
                where,
                status=413,
            )
        return data

    def _url_bytes(self, url: str, where: str) -> bytes | Path:
        """A data URL's bytes, or a local path inside the operator's allowed folder."""
        match = _DATA_URL.match(url)
        if match:
            return self._sized(b64decode_strict(match.group("data"), where), where)
        if url.startswith(("http://", "https://")):
            raise RequestError(f"{where}: remote URLs are not fetched; send a base64 data URL", where)
        if self.limits.allowed_media_dir is None:
            raise RequestError(f"{where}: local paths are disabled on this server; send a base64 data URL", where)
        root = Path(self.limits.allowed_media_dir).resolve()
        path = Path(url.removeprefix("file://")).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise RequestError(f"{where}: {url!r} is not a file inside the allowed media folder", where)
        if path.stat().st_size > self.limits.max_media_bytes:
            raise RequestError(f"{where}: {url!r} is over the size limit", where, status=413)
        return path


__all__ = [
    "ChatCompletionRequest",
    "ConversationBuilder",
    "Message",
    "RequestError",
    "ServerLimits",
    "check_request",
]
