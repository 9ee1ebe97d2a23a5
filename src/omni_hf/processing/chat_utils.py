"""Chat helpers: the official Qwen2.5-Omni chat template, the default system prompt, and media extraction from
conversations (`{"type": "audio" | "image" | "video" | "text", ...}` content blocks)."""

from importlib import resources

import numpy as np

from .audio import AUDIO_SAMPLING_RATE
from .content_parts import parse_content_part
from .encoding import PCM16_RATE, b64decode_strict, parse_data_url, pcm16_to_float, url_scheme

DEFAULT_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and "
    "visual inputs, as well as generating text and speech."
)
MEDIA_KINDS = ("image", "video", "audio")


def default_chat_template() -> str:
    """The official Qwen2.5-Omni chat template (shipped as `omni_hf/processing/chat_template.jinja`)."""
    return resources.files(__package__).joinpath("chat_template.jinja").read_text(encoding="utf-8")


def normalize_conversations(conversation) -> tuple[list[list[dict]], bool]:
    """A conversation or a batch of them → (list of checked conversations, whether the input was batched).

    Every message is checked (see `check_message`): OpenAI-style `image_url` / `input_audio` blocks become `image` /
    `audio` blocks, `content: None` becomes an empty string, anything the template would drop silently is refused.
    """
    is_batched = (
        isinstance(conversation, (list, tuple)) and bool(conversation) and isinstance(conversation[0], (list, tuple))
    )
    if not isinstance(conversation, (list, tuple)):
        raise ValueError(f"A conversation must be a list of messages, got {type(conversation).__name__}")
    conversations = conversation if is_batched else [conversation]
    return [[check_message(m, j) for j, m in enumerate(c)] for c in conversations], is_batched


def check_message(message: dict, index: int) -> dict:
    """One chat message, checked and normalised (a new dict; the caller's is not modified).

    Raises:
        ValueError: naming message `index`: no role, content that is neither a string nor a list of blocks, a
        block of an unsupported type, a text block without text.
    """
    if not isinstance(message, dict):
        raise ValueError(f"Message #{index} must be a dict with 'role' and 'content', got {type(message).__name__}")
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise ValueError(f"Message #{index} has no 'role' (one of system, user, assistant): {_short(message)}")
    content = message.get("content")
    if content is None:
        content = ""
    if isinstance(content, dict):
        raise ValueError(
            f"Message #{index} ({role}) has a dict as content: content is a string or a LIST of blocks "
            f"(wrap it: [{_short(content)}])"
        )
    if isinstance(content, (list, tuple)):
        content = [_check_block(block, index, k) for k, block in enumerate(content)]
    elif not isinstance(content, str):
        raise ValueError(
            f"Message #{index} ({role}) has content of type {type(content).__name__}: expected a string or a list"
        )
    return {**message, "content": content}


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_block(block, index: int, position: int) -> dict:
    """One content block: OpenAI parts (parsed by `content_parts.parse_content_part`) become omni_hf blocks."""
    where = f"Message #{index}, block #{position}"
    part = parse_content_part(block, where, api="processor")
    if part is None:  # omni_hf's own image / audio / video block
        return block
    if part.kind == "text":
        return block
    if part.kind == "audio":
        if part.format == "pcm16":
            samples = pcm16_to_float(b64decode_strict(part.data, where))
            return {"type": "audio", "audio": samples, "sampling_rate": PCM16_RATE}
        return {"type": "audio", "audio": b64decode_strict(part.data, where)}
    return {"type": part.kind, part.kind: _from_url(part.url, part.kind, where)}


def _from_url(url: str, kind: str, where: str):
    scheme = url_scheme(url)
    if scheme == "data":
        if kind == "video":
            raise ValueError(f"{where}: pass a video as a file path here (video data URLs are taken by the server)")
        return parse_data_url(url, kind, where)
    if scheme == "file":
        return url[len("file://") :]
    if scheme is not None:
        raise ValueError(
            f"{where}: Remote {kind} URLs are not supported ({scheme}://): download the file and pass its path"
        )
    return url


def with_system_prompt(conversations: list[list[dict]], system_prompt: str | None) -> list[list[dict]]:
    """Prepend `{"role": "system", "content": system_prompt}` to conversations that do not start with one."""
    if system_prompt is None:
        return conversations
    return [
        c if c and c[0].get("role") == "system" else [{"role": "system", "content": system_prompt}, *c]
        for c in conversations
    ]


def collect_media(conversations: list[list[dict]]) -> dict[str, list]:
    """The media of every content block, per kind, in conversation order (the order of their placeholders)."""
    media = {kind: [] for kind in MEDIA_KINDS}
    for conversation in conversations:
        for message in conversation:
            content = message.get("content")
            for block in content if isinstance(content, list) else []:
                kind = block.get("type")
                if kind in media:
                    media[kind].append(_block_media(block, kind))
    return media


def _block_media(block: dict, kind: str):
    value = block.get(kind, block.get("path", block.get("url")))
    if value is None:
        raise ValueError(f"A {kind!r} content block needs the media under the {kind!r} (or 'path') key: {block}")
    if isinstance(value, str) and url_scheme(value) is not None:
        value = _from_url(value, kind, f"A {kind!r} content block")
    if kind == "audio" and "sampling_rate" in block:
        return (value, int(block["sampling_rate"]))
    if kind == "audio" and isinstance(value, np.ndarray):
        return (value, AUDIO_SAMPLING_RATE)
    return value


__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "check_message",
    "collect_media",
    "default_chat_template",
    "normalize_conversations",
    "with_system_prompt",
]
