"""The conversation items of a `/v1/realtime` session, as the protocol shows them, with what rebuilds them.

The Thinker's KV cache (`OmniConversation`) only grows at its end. Items added at the end go straight into it; an
item deleted, truncated or inserted before the end (`previous_item_id` not the last item, or `"root"`), a changed
system prompt (instructions, tools) or a response with its own `instructions` / `conversation: "none"` is served
by replaying the items into a fresh conversation (`replay`): a full prefill, correct but costly for long sessions.

Client items (`parse_item`): `message` (role user / assistant / system; content `input_text` / `text` /
`output_text`, `input_audio` (pcm16 24 kHz), `input_image` (data URL), `audio` with a transcript),
`function_call` (name, call_id, arguments) and `function_call_output` (call_id, output). They are rendered in the
Thinker's chat format: assistant and system messages as their text, a function call as Qwen2.5's
`<tool_call>{"name": ..., "arguments": ...}</tool_call>`, its output as a user turn `<tool_response>...</tool_response>`.
"""

import json
from dataclasses import dataclass, field

import numpy as np

from .realtime_events import EventError, decode_audio, decode_image, new_id
from .tools import render_tool_call, render_tool_response

ROLES = ("user", "assistant", "system")


@dataclass
class Source:
    """What an item adds to the conversation: `role`, `text`, `images` (PIL), `audio` (16 kHz float32 clips)."""

    role: str
    text: str = ""
    images: list = field(default_factory=list)
    audio: list = field(default_factory=list)
    applied: bool = False  # already in the main conversation
    item_id: str | None = None


def message_item(item_id: str, role: str, content: list, status: str = "completed") -> dict:
    return {"id": item_id, "object": "realtime.item", "type": "message", "role": role, "status": status,
            "content": content}  # fmt: skip


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status="completed") -> dict:
    return {"id": item_id, "object": "realtime.item", "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}  # fmt: skip


def parse_item(event: dict, resample) -> tuple[dict, Source]:
    """A `conversation.item.create` event's item → `(protocol item, Source)`; `resample` turns 24 kHz pcm16 samples
    into 16 kHz ones. Raises `EventError` naming the bad field."""
    event_id = event.get("event_id")

    def fail(message, param, code="invalid_event"):
        raise EventError(message, code=code, param=param, event_id=event_id)

    item = event.get("item")
    if not isinstance(item, dict):
        fail("conversation.item.create needs an `item` object", "item")
    item_id = item.get("id") or new_id("item")
    if not isinstance(item_id, str) or len(item_id) > 64:
        fail("item.id must be a string of at most 64 characters", "item.id")
    kind = item.get("type", "message")
    if kind == "function_call":
        name, arguments = item.get("name"), item.get("arguments", "{}")
        if not isinstance(name, str) or not name:
            fail("A function_call item needs a `name`", "item.name")
        if not isinstance(arguments, str):
            fail("item.arguments must be a JSON string", "item.arguments")
        call_id = item.get("call_id") or new_id("call")
        protocol = function_call_item(item_id, call_id, name, arguments)
        return protocol, Source("assistant", render_tool_call(name, arguments))
    if kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str):
            fail("A function_call_output item needs `call_id` and `output` strings", "item.output")
        protocol = {"id": item_id, "object": "realtime.item", "type": "function_call_output", "call_id": call_id,
                    "output": output, "status": "completed"}  # fmt: skip
        return protocol, Source("user", render_tool_response(output))
    if kind != "message":
        fail(f"item.type must be message, function_call or function_call_output, got {kind!r}", "item.type")
    role = item.get("role")
    if role not in ROLES:
        fail(f"item.role must be one of {', '.join(ROLES)}, got {role!r}", "item.role")
    content = item.get("content")
    if not isinstance(content, list) or not content:
        fail("item.content must be a non-empty list", "item.content")
    source, shown = Source(role), []
    for i, part in enumerate(content):
        part_kind = part.get("type") if isinstance(part, dict) else None
        where = f"item.content[{i}]"
        if part_kind in ("input_text", "text", "output_text") and isinstance(part.get("text"), str):
            source.text += part["text"]
            shown.append({"type": part_kind, "text": part["text"]})
        elif part_kind in ("audio", "output_audio") and role == "assistant":  # heard audio: its transcript
            transcript = part.get("transcript") or ""
            if not isinstance(transcript, str):
                fail(f"{where}.transcript must be a string", f"{where}.transcript")
            source.text += transcript
            shown.append({"type": "audio", "transcript": transcript})
        elif part_kind == "input_audio" and role == "user":
            samples = decode_audio(part.get("audio"), f"{where}.audio", event_id)
            source.audio.append(resample(samples))
            shown.append({"type": "input_audio", "transcript": part.get("transcript")})
        elif part_kind == "input_image" and role == "user":
            source.images.append(decode_image(part.get("image_url"), f"{where}.image_url", event_id))
            shown.append({"type": "input_image"})
        else:
            fail(f"{where}: a {role} message takes input_text, text"
                 + (", input_audio (pcm16) and input_image" if role == "user" else ", audio (with a transcript)")
                 + f"; got {part_kind!r}", where, "unsupported_content")  # fmt: skip
    return message_item(item_id, role, shown), source


class ItemLog:
    """The session's items in order (`items`: protocol dicts) and their `Source`s."""

    def __init__(self):
        self.items: list[dict] = []
        self.sources: dict[str, Source] = {}

    @property
    def last_id(self) -> str | None:
        return self.items[-1]["id"] if self.items else None

    def index(self, item_id) -> int:
        for i, item in enumerate(self.items):
            if item["id"] == item_id:
                return i
        return -1

    def get(self, item_id) -> dict | None:
        i = self.index(item_id)
        return None if i < 0 else self.items[i]

    def insert(self, item: dict, source: Source, previous_item_id=None) -> tuple[str | None, bool]:
        """Add `item` after `previous_item_id` (None: at the end; "root": first). Returns `(the id it follows,
        at_end)`; `at_end` False means the conversation must be replayed."""
        if previous_item_id is None or previous_item_id == self.last_id:
            previous, at = self.last_id, len(self.items)
        elif previous_item_id == "root":
            previous, at = None, 0
        else:
            i = self.index(previous_item_id)
            if i < 0:
                raise EventError(f"previous_item_id {previous_item_id!r} is not an item of this conversation",
                                 code="item_not_found", param="previous_item_id")  # fmt: skip
            previous, at = previous_item_id, i + 1
        self.items.insert(at, item)
        self.sources[item["id"]] = source
        return previous, at == len(self.items) - 1

    def delete(self, item_id) -> None:
        i = self.index(item_id)
        if i < 0:
            raise EventError(f"Item {item_id!r} does not exist in this conversation", code="item_not_found",
                             param="item_id")  # fmt: skip
        del self.items[i]
        self.sources.pop(item_id, None)


def replay(conversation, log: ItemLog) -> None:
    """Add every item of `log` to a fresh `conversation` (an `OmniConversation`), in order."""
    for item in log.items:
        add_source(conversation, log.sources[item["id"]])


def add_source(conversation, source: Source) -> None:
    """One item into `conversation` (its text stays text: special-token strings in it are not control tokens)."""
    if source.audio:
        conversation.begin_audio()
        for clip in source.audio:
            conversation.append_audio(np.asarray(clip, dtype=np.float32))
        conversation.end_audio(text=source.text)
    else:
        conversation.add_text(source.text, images=source.images, role=source.role)


def arguments_json(arguments) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


__all__ = ["ItemLog", "Source", "add_source", "function_call_item", "message_item", "parse_item", "replay"]
