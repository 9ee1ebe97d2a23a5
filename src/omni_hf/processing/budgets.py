"""Budgets checked before work: does a prompt plus its reply fit the Thinker's context? Is a text short enough to
tokenize at all?

`check_generation_budget` is the check `generate`, `stream` and `OmniSession` run before the first forward, so a
request that cannot finish is refused with its numbers instead of failing mid-reply.

Example:

```python
>>> from omni_hf.processing.budgets import check_generation_budget
>>> check_generation_budget(inputs["input_ids"], max_new_tokens=256, config=model.config)
```
"""

from typing import Any

# A token of Qwen's byte-level BPE covers far fewer than 32 characters on average (~4 for prose, ~10 for
# whitespace-heavy code), so a text of more than 32 characters per context token can never fit: it is refused
# before tokenizing (a 20 MB text took 33 s and 6.8 GB to tokenize before being refused).
CHARS_PER_TOKEN_BOUND = 32
MAX_TEXT_CHARS = CHARS_PER_TOKEN_BOUND * 32768  # the Thinker's context (max_position_embeddings)


def check_text_chars(texts, max_chars: int | None = MAX_TEXT_CHARS, what: str = "The text") -> int:
    """Refuse, before tokenizing, texts whose characters (summed) exceed `max_chars`; returns the count.

    Args:
        texts: a string or an iterable of strings.
    """
    count = len(texts) if isinstance(texts, str) else sum(len(t) for t in texts if isinstance(t, str))
    if max_chars is not None and count > max_chars:
        raise ValueError(
            f"{what} has {count} characters, more than the {max_chars} accepted ({CHARS_PER_TOKEN_BOUND} per token "
            "of the context): it cannot fit the model's context. Shorten it"
        )
    return count


def context_length(config: Any) -> int:
    """The Thinker's context (`max_position_embeddings`) from a full-model, Thinker or text config."""
    for name in ("thinker_config", None):
        cfg = getattr(config, name, None) if name else config
        if cfg is None:
            continue
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        value = getattr(text, "max_position_embeddings", None)
        if value:
            return int(value)
    raise ValueError(f"{type(config).__name__} has no max_position_embeddings: pass context= instead")


def check_generation_budget(
    prompt: Any,
    max_new_tokens: int | None,
    config: Any = None,
    context: int | None = None,
) -> int:
    """Refuse a prompt whose length plus `max_new_tokens` exceeds the context, before any forward pass.

    Args:
        prompt: `input_ids` `(batch, seq)` / `(seq,)` (tensor, array or list), or the prompt length as an int.
        max_new_tokens: the reply budget (None counts as 0).
        config: a model config to read the context from, or `context` (tokens) directly.

    Returns:
        the tokens left after the prompt.

    Raises:
        ValueError: naming the prompt length, `max_new_tokens` and the context.
    """
    if isinstance(prompt, int):
        length = prompt
    else:
        shape = getattr(prompt, "shape", None)
        length = (
            int(shape[-1])
            if shape is not None
            else len(prompt[0] if prompt and isinstance(prompt[0], list) else prompt)
        )
    if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 0):
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    limit = context if context is not None else context_length(config)
    needed = length + (max_new_tokens or 0)
    if needed > limit:
        raise ValueError(
            f"The prompt has {length} tokens and max_new_tokens={max_new_tokens}: {needed} tokens, more than the "
            f"model's context of {limit}. Shorten the input (fewer or shorter media, lower fps / max_pixels) or lower "
            "max_new_tokens"
        )
    return limit - length


__all__ = ["CHARS_PER_TOKEN_BOUND", "MAX_TEXT_CHARS", "check_generation_budget", "check_text_chars", "context_length"]
