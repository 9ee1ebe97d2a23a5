"""Chat helpers: the official Qwen2.5-Omni chat template, the default system prompt, and media extraction from
conversations (`{"type": "audio" | "image" | "video" | "text", ...}` content blocks)."""

from importlib import resources

import numpy as np

from .media import AUDIO_SAMPLING_RATE

DEFAULT_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and "
    "visual inputs, as well as generating text and speech."
)
MEDIA_KINDS = ("image", "video", "audio")


def default_chat_template() -> str:
    """The official Qwen2.5-Omni chat template (shipped as `omni_hf/processing/chat_template.jinja`)."""
    return resources.files(__package__).joinpath("chat_template.jinja").read_text(encoding="utf-8")


def normalize_conversations(conversation) -> tuple[list[list[dict]], bool]:
    """A conversation or a batch of them → (list of conversations, whether the input was batched)."""
    is_batched = (
        isinstance(conversation, (list, tuple)) and bool(conversation) and isinstance(conversation[0], (list, tuple))
    )
    return [list(c) for c in (conversation if is_batched else [conversation])], is_batched


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
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        raise ValueError(f"Remote {kind} URLs are not supported ({value!r}): download the file and pass its path.")
    if kind == "audio" and "sampling_rate" in block:
        return (value, int(block["sampling_rate"]))
    if kind == "audio" and isinstance(value, np.ndarray):
        return (value, AUDIO_SAMPLING_RATE)
    return value


__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "collect_media",
    "default_chat_template",
    "normalize_conversations",
    "with_system_prompt",
]
