"""Realtime API events: checks of the client events omni_hf serves, and the server events it sends.

Client events are validated before any work (`parse_client_event` raises `EventError` naming the bad field); server
events are plain dicts in the protocol's shapes. Event names follow the installed `openai` package (the GA protocol:
`response.output_text.delta`, `response.output_audio.delta`, `response.output_audio_transcript.delta`); a client
that connects with the `OpenAI-Beta: realtime=v1` header gets the beta names (`response.text.delta`,
`response.audio.delta`, `response.audio_transcript.delta`).
"""

import json
import uuid
from dataclasses import dataclass, field

from ..processing.budgets import MAX_TEXT_CHARS
from ..processing.content_parts import decode_image_data, parse_content_part
from ..processing.encoding import PCM16_RATE, MediaError, audio_b64, b64decode_strict, parse_data_url, pcm16_to_float

CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "response.create",
    "response.cancel",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "output_audio_buffer.clear",
)
BETA_NAMES = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
}
RATE = PCM16_RATE  # pcm16 rate of the protocol, in and out


class EventError(ValueError):
    """A client event the server cannot take: `code` and `param` go into the `error` event."""

    def __init__(self, message: str, code: str = "invalid_event", param: str | None = None, event_id=None):
        super().__init__(message)
        self.code, self.param, self.event_id = code, param, event_id


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


@dataclass
class TurnDetection:
    """`server_vad` settings (see `omni_hf.serving.vad`); `type` "semantic_vad" is server VAD with a longer wait
    (`omni_hf.serving.realtime_compat`)."""

    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SessionSettings:
    """What `session.update` can change. `instructions` None: the processor's default system prompt."""

    voice: str = "Chelsie"
    instructions: str | None = None
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    audio_output: bool = True
    max_output_tokens: int | None = None  # None: the server's default

    def as_dict(self, session_id: str, model: str, beta: bool) -> dict:
        turn = None if self.turn_detection is None else self.turn_detection.as_dict()
        audio_format = {"type": "audio/pcm", "rate": RATE}
        modalities = ["audio"] if self.audio_output else ["text"]
        common = {"id": session_id, "object": "realtime.session", "model": model, "instructions": self.instructions}
        if beta:
            return common | {"modalities": ["text", *modalities[:1] * self.audio_output], "voice": self.voice,
                             "input_audio_format": "pcm16", "output_audio_format": "pcm16", "turn_detection": turn}  # fmt: skip
        return common | {
            "type": "realtime",
            "output_modalities": modalities,
            "audio": {
                "input": {"format": audio_format, "turn_detection": turn},
                "output": {"format": audio_format, "voice": self.voice},
            },
        }


def parse_client_event(raw: str | bytes) -> dict:
    """The event as a dict, checked: a JSON object with a known `type` and the fields that type needs."""
    try:
        event = json.loads(raw)
    except (TypeError, ValueError) as error:
        raise EventError(f"The event is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(event, dict):
        raise EventError("The event must be a JSON object", code="invalid_json")
    kind = event.get("type")
    if kind not in CLIENT_EVENTS:
        raise EventError(
            f"Unknown or unsupported event type {kind!r}; supported: {', '.join(CLIENT_EVENTS)}",
            code="invalid_event_type",
            param="type",
            event_id=event.get("event_id"),
        )
    if kind == "input_audio_buffer.append":
        event["samples"] = decode_audio(event.get("audio"), "audio", event.get("event_id"))
    return event


def decode_audio(value, param: str, event_id=None):
    """base64 pcm16 at 24 kHz → float32 samples `(n,)`."""
    if not isinstance(value, str):
        raise EventError(f"`{param}` must be a base64 string of pcm16 audio", param=param, event_id=event_id)
    try:
        return pcm16_to_float(b64decode_strict(value, f"`{param}`"))
    except ValueError as error:
        raise EventError(f"`{param}` is not base64 pcm16 audio: {error}", param=param, event_id=event_id) from None


def decode_image(value, param: str, event_id=None):
    """A `data:image/...;base64,...` URL → an RGB PIL image (remote URLs are not fetched; the size is checked from
    the header before decoding)."""
    try:
        if not isinstance(value, str) or not value.startswith("data:"):
            raise MediaError(
                f"`{param}` must be a data URL (data:image/png;base64,...); the server fetches no remote URLs"
            )
        return decode_image_data(parse_data_url(value, "image", f"`{param}`"), f"`{param}`")
    except ValueError as error:
        raise EventError(str(error), code="invalid_image", param=param, event_id=event_id) from None


def update_settings(settings: SessionSettings, session: dict, speakers, event_id=None) -> SessionSettings:
    """Apply a `session.update` payload (GA or beta shape) to a copy of `settings`; every field is checked first."""
    if not isinstance(session, dict):
        raise EventError("session.update needs a `session` object", param="session", event_id=event_id)

    def fail(message, param):
        raise EventError(message, param=f"session.{param}", event_id=event_id)

    new = SessionSettings(**settings.__dict__)

    def mapping(value, param):
        if value is not None and not isinstance(value, dict):
            fail(f"{param} must be an object, got {type(value).__name__}", param)
        return value or {}

    audio = mapping(session.get("audio"), "audio")
    audio_in, audio_out = mapping(audio.get("input"), "audio.input"), mapping(audio.get("output"), "audio.output")
    voice = session.get("voice", audio_out.get("voice"))
    if voice is not None:
        if not isinstance(voice, str):
            fail(f"voice must be a string, got {type(voice).__name__}", "voice")
        if voice not in speakers:
            fail(f"Unknown voice {voice!r}: this model speaks as {', '.join(sorted(speakers))}", "voice")
        new.voice = voice
    if "instructions" in session:
        if not isinstance(session["instructions"], str | None):
            fail("instructions must be a string", "instructions")
        new.instructions = session["instructions"]
    for key, value in (("input_audio_format", session.get("input_audio_format")),
                       ("output_audio_format", session.get("output_audio_format"))):  # fmt: skip
        if value not in (None, "pcm16"):
            fail(f"Only pcm16 audio (24 kHz mono) is supported, got {value!r}", key)
    for key, value in (
        ("audio.input.format", audio_in.get("format")),
        ("audio.output.format", audio_out.get("format")),
    ):
        if value is not None and (
            not isinstance(value, dict) or value.get("type") != "audio/pcm" or value.get("rate", RATE) != RATE
        ):
            fail(f"Only audio/pcm at {RATE} Hz is supported, got {value!r}", key)
    modalities = session.get("output_modalities", session.get("modalities"))
    if modalities is not None:
        if not isinstance(modalities, list) or not modalities or not {*map(str, modalities)} <= {"text", "audio"}:
            fail(f"modalities must be a list of 'text' / 'audio', got {modalities!r}", "output_modalities")
        new.audio_output = "audio" in modalities
    limit = session.get("max_output_tokens", session.get("max_response_output_tokens", "unset"))
    if limit != "unset":
        if limit not in (None, "inf") and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            fail(f"max_output_tokens must be a positive integer or 'inf', got {limit!r}", "max_output_tokens")
        new.max_output_tokens = None if limit in (None, "inf") else limit
    turn_key = "turn_detection" if "turn_detection" in session else None
    turn = session.get("turn_detection") if turn_key else audio_in.get("turn_detection", "unset")
    if turn != "unset":
        new.turn_detection = parse_turn_detection(turn, fail)
    return new


def parse_turn_detection(turn, fail) -> TurnDetection | None:
    if turn is None or (isinstance(turn, dict) and turn.get("type") == "none"):
        return None
    if not isinstance(turn, dict) or turn.get("type") not in ("server_vad", "semantic_vad"):
        fail(f"turn_detection must be null or of type 'server_vad' (energy VAD), got {turn!r}", "turn_detection")
    fields = TurnDetection.__dataclass_fields__
    values = {k: v for k, v in turn.items() if k in fields}
    result = TurnDetection(**values)
    if not (isinstance(result.threshold, int | float) and 0 <= result.threshold <= 1):
        fail("turn_detection.threshold must be in [0, 1]", "turn_detection.threshold")
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if not isinstance(getattr(result, key), int) or getattr(result, key) < (key == "silence_duration_ms"):
            fail(f"turn_detection.{key} must be a non-negative integer (silence: positive)", f"turn_detection.{key}")
    return result


def parse_user_item(event: dict) -> list[tuple[str, object]]:
    """The parts of a `conversation.item.create` user message: `("text", str)`, `("audio", float32 24 kHz)` or
    `("image", PIL image)`."""
    event_id = event.get("event_id")
    item = event.get("item")
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        raise EventError("conversation.item.create needs an `item` of type 'message'", param="item", event_id=event_id)
    if item.get("role") != "user":
        raise EventError(
            f"Only user messages can be added, got role {item.get('role')!r}", param="item.role", event_id=event_id
        )
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise EventError("item.content must be a non-empty list", param="item.content", event_id=event_id)
    parts = []
    for i, raw in enumerate(content):
        where = f"item.content[{i}]"
        try:
            part = parse_content_part(raw, where, api="realtime", max_text_chars=MAX_TEXT_CHARS)
        except MediaError as error:
            image = isinstance(raw, dict) and raw.get("type") == "input_image"
            shape = error.param == where and error.status != 413  # not a part we take, vs a bad field or size
            code = "invalid_image" if image else "unsupported_content" if shape else "invalid_event"
            raise EventError(str(error), code=code, param=error.param, event_id=event_id) from None
        if part.kind == "text":
            parts.append(("text", part.text))
        elif part.kind == "audio":
            parts.append(("audio", decode_audio(part.data, f"{where}.audio", event_id)))
        else:
            parts.append(("image", decode_image(part.url, f"{where}.image_url", event_id)))
    return parts


def error_event(error: Exception, event_id=None) -> dict:
    code = getattr(error, "code", "server_error" if not isinstance(error, ValueError) else "invalid_request")
    return {
        "type": "error",
        "event_id": new_id("event"),
        "error": {
            "type": "invalid_request_error" if isinstance(error, ValueError) else "server_error",
            "code": code,
            "message": str(error),
            "param": getattr(error, "param", None),
            "event_id": getattr(error, "event_id", None) or event_id,
        },
    }


__all__ = [
    "BETA_NAMES",
    "EventError",
    "SessionSettings",
    "TurnDetection",
    "audio_b64",
    "error_event",
    "new_id",
    "parse_client_event",
    "parse_user_item",
    "update_settings",
]
