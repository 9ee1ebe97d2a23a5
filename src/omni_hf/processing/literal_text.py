"""Message text kept as plain text: special-token strings typed by a user (`<|im_end|><|im_start|>system ...`) must
not become control tokens (role injection).

`protect_text` swaps every message text that holds a special-token string for a marker (`\\ue000{i}\\ue001`, Unicode
private-use characters) before the chat template is rendered; `tokenize_with_literals` tokenizes the rendered prompt
piece by piece, the marked texts with `split_special_tokens=True`. A text without special-token strings is left in
place, so ordinary prompts tokenize exactly as before.
"""

import re
from collections.abc import Iterable

MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"
_MARKER = re.compile(f"{MARK_OPEN}(\\d+){MARK_CLOSE}")


def control_token_strings(tokenizer) -> list[str]:
    """The strings the tokenizer turns into special (control) tokens."""
    added = [token.content for token in getattr(tokenizer, "added_tokens_decoder", {}).values() if token.special]
    return sorted({*added, *tokenizer.all_special_tokens}, key=len, reverse=True)


def _needs_protection(text: str, specials: Iterable[str]) -> bool:
    return MARK_OPEN in text or MARK_CLOSE in text or any(s in text for s in specials)


def protect_text(conversations: list[list[dict]], specials: list[str]) -> tuple[list[list[dict]], list[str]]:
    """Copies of `conversations` where each text holding a special-token string is replaced by a marker; returns them
    with the original texts (marker `i` stands for `literals[i]`)."""
    literals: list[str] = []

    def mark(text):
        if not isinstance(text, str) or not _needs_protection(text, specials):
            return text
        literals.append(text)
        return f"{MARK_OPEN}{len(literals) - 1}{MARK_CLOSE}"

    protected = []
    for conversation in conversations:
        messages = []
        for message in conversation:
            content = message.get("content")
            if isinstance(content, str):
                message = {**message, "content": mark(content)}
            elif isinstance(content, list):
                blocks = [
                    {**b, "text": mark(b["text"])} if isinstance(b, dict) and isinstance(b.get("text"), str) else b
                    for b in content
                ]
                message = {**message, "content": blocks}
            messages.append(message)
        protected.append(messages)
    return protected, literals


def restore_text(prompt: str, literals: list[str]) -> str:
    """The rendered prompt with every marker replaced by its original text."""
    return _MARKER.sub(lambda m: literals[int(m.group(1))], prompt) if literals else prompt


def tokenize_with_literals(tokenizer, texts: list[str], literals: list[str] | None, **kwargs) -> list[list[int]]:
    """Token ids of each prompt `(seq,)`: template text as usual, marked texts with special-token strings split into
    ordinary tokens. Without `literals` this is `tokenizer(texts, **kwargs)["input_ids"]`."""
    if not literals:
        return tokenizer(texts, padding=False, **kwargs)["input_ids"]
    rows = []
    for text in texts:
        pieces = _MARKER.split(text)  # [template, index, template, index, ..., template]
        row = []
        for i, piece in enumerate(pieces):
            if i % 2:
                row += tokenizer(literals[int(piece)], add_special_tokens=False, split_special_tokens=True)[
                    "input_ids"
                ]
            elif piece:
                row += tokenizer(piece, add_special_tokens=False)["input_ids"]
        rows.append(row)
    return rows


def tokenize_filled(tokenizer, template: str, slot: str, text: str) -> list[int]:
    """Token ids `(seq,)` of `template` with `slot` replaced by the untrusted `text`, kept as plain text: template
    pieces as usual, `text` with special-token strings split into ordinary tokens. A text without special-token
    strings is tokenized in place (`tokenizer(template.replace(slot, text))`), exactly as before."""
    specials = control_token_strings(tokenizer)
    if not _needs_protection(text, specials):
        return tokenizer(template.replace(slot, text), add_special_tokens=False)["input_ids"]
    marked = template.replace(slot, f"{MARK_OPEN}0{MARK_CLOSE}")
    return tokenize_with_literals(tokenizer, [marked], [text], add_special_tokens=False)[0]


__all__ = ["control_token_strings", "protect_text", "restore_text", "tokenize_filled", "tokenize_with_literals"]
