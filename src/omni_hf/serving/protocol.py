"""Request models of `POST /v1/chat/completions` (the OpenAI audio API subset we serve) and their validation.

Unknown fields are rejected (an OpenAI-style 400 naming the field), as are malformed media, too many media, and
uploads over the limits, all before any model work. Content parts are parsed once, by `omni_hf.processing.content_parts`
(shared with realtime and the processor); `ConversationBuilder` turns them into the `OmniProcessor` conversation
(`text`, `audio` arrays, `image` PIL images, `video` files), checking each budget from the media's header first.
"""

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..processing.budgets import MAX_TEXT_CHARS
from ..processing.content_parts import (
    ContentPart,
    check_video_file,
    decode_audio_data,
    decode_image_data,
    parse_content,
)
from ..processing.encoding import (
    OUTPUT_FORMATS,
    MediaError,
    b64decode_strict,
    parse_data_url,
    refuse_remote,
    url_scheme,
)
from ..processing.media import MAX_DECODE_PIXELS


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
    max_video_seconds: float = 300.0
    max_image_pixels: int = MAX_DECODE_PIXELS
    max_text_chars: int = MAX_TEXT_CHARS
    max_messages: int = 64
    max_tokens: int = 1024
    talker_max_new_tokens: int = 4096
    timeout: float = 300.0
    allowed_media_dir: str | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallFunction(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(_Strict):
    """A chat message; a list `content` holds `ContentPart`s, parsed by `omni_hf.processing.content_parts` when the
    request is validated (None only for an assistant message with `tool_calls`)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Any] | None
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
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    user: str | None = None
    voice_adapter: str | None = None
    tools: list[dict] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_content(cls, data):
        """Every message's content parsed once, here, with errors naming the part (`messages[0].content[1]`)."""
        messages = data.get("messages") if isinstance(data, dict) else None
        for i, message in enumerate(messages if isinstance(messages, list) else []):
            if isinstance(message, dict) and message.get("content") is not None:
                try:
                    message["content"] = parse_content(message["content"], f"messages[{i}].content", api="chat")
                except MediaError as error:
                    context = {"message": str(error), "param": error.param}
                    raise PydanticCustomError("content_part", "{message}", context) from None
        return data

    @property
    def speaks(self) -> bool:
        return "audio" in self.modalities


def request_error(error: pydantic.ValidationError) -> "RequestError":
    """A request that failed validation as an OpenAI-style error: the first problem, named by its field."""
    first = error.errors()[0]
    param = (first.get("ctx") or {}).get("param") or ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "content_part":
        return RequestError(first["msg"], param)
    message = f"Unrecognized request argument: {param}" if first["type"] == "extra_forbidden" else first["msg"]
    value = first.get("input")
    if isinstance(value, float) and not math.isfinite(value):  # NaN fails "<= 2" too: say what is wrong
        message = f"Input should be a finite number, got {value}"
    return RequestError(f"{message} ({param})" if param else message, param)


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
    parts = [part for message in request.messages if isinstance(message.content, list) for part in message.content]
    media = sum(part.kind != "text" for part in parts)
    if media > limits.max_media_items:
        raise RequestError(f"Too many media parts ({media} > {limits.max_media_items})", "messages")
    texts = [m.content for m in request.messages if isinstance(m.content, str)] + [p.text for p in parts if p.text]
    chars = sum(len(text) for text in texts)
    if chars > limits.max_text_chars:
        raise RequestError(
            f"The messages hold {chars} characters of text, more than this server's limit of {limits.max_text_chars}",
            "messages",
            status=413,
        )
    tokens = request.max_completion_tokens or request.max_tokens
    if tokens is not None and tokens > limits.max_tokens:
        raise RequestError(f"max_tokens {tokens} is above this server's limit {limits.max_tokens}", "max_tokens")


def tool_message(message: Message, i: int) -> dict:
    """A `tool` message (a function's output) as the user turn `<tool_response>...</tool_response>`, an assistant
    message with `tool_calls` as its text followed by each `<tool_call>` block."""
    from .tools import render_tool_call, render_tool_response

    content = message.content
    if content is not None and not isinstance(content, str):
        texts = [p.text for p in content if p.kind == "text"]
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
    """Turn validated messages into an `OmniProcessor` conversation; owns temporary video files (`close()`).

    Every budget is checked from the media's header before decoding: audio sample rate and seconds, image pixels,
    video seconds and frame size."""

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
                except MediaError as error:
                    raise RequestError(str(error), where, status=error.status) from None
                except ValueError as error:
                    raise RequestError(str(error), where) from None
            conversation.append({"role": role, "content": blocks})
        return conversation

    def _block(self, part: ContentPart, where: str) -> dict:
        limits = self.limits
        if part.kind == "text":
            return {"type": "text", "text": part.text}
        if part.kind == "audio":
            data = b64decode_strict(part.data, f"{where}.input_audio.data", limits.max_media_bytes)
            audio, rate = decode_audio_data(data, part.format, f"{where}.input_audio", limits.max_audio_seconds)
            return {"type": "audio", "audio": audio, "sampling_rate": rate}
        source = self._url_source(part.url, part.kind, f"{where}.{part.kind}_url.url")
        if part.kind == "image":
            if isinstance(source, Path):
                return {"type": "image", "image": str(source)}
            return {"type": "image", "image": decode_image_data(source, f"{where}.image_url", limits.max_image_pixels)}
        if not isinstance(source, Path):
            path = Path(self._temp.name) / f"video{len(list(Path(self._temp.name).iterdir()))}.mp4"
            path.write_bytes(source)
            source = path
        check_video_file(source, f"{where}.video_url", limits.max_video_seconds, limits.max_image_pixels)
        return {"type": "video", "video": str(source)}

    def _url_source(self, url: str, kind: str, where: str) -> bytes | Path:
        """A data URL's bytes (its declared type checked against them), or a local path inside the operator's
        allowed folder."""
        if url_scheme(url) == "data":
            return parse_data_url(url, kind, where, self.limits.max_media_bytes)
        refuse_remote(url, where, local_paths=self.limits.allowed_media_dir is not None)
        root = Path(self.limits.allowed_media_dir).resolve()
        path = Path(url[len("file://") :] if url_scheme(url) == "file" else url).resolve()
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
    "request_error",
]
