"""How many speech codes the Talker may produce for a reply: a cap that follows the text, unless the caller sets one.

The Talker stops at its end code; when it does not (a sampled run that drifts, an untrained or tiny model), it ran to
the fixed `talker_max_new_tokens` default, 4096 codes = 82 s of audio, even for a six-token reply. Speech is 50
codes per second, and spoken text runs at about 3-4 tokens per second (English ~2.5-3 words/s, Chinese ~4-5
characters/s; ~12-17 codes per text token). The cap allows twice that, 0.5 s (25 codes) per text token, plus 2 s,
so no real reply is cut, and never more than the old default:

    cap(reply tokens) = min(4096, 100 + 25 * reply tokens)      # 6 tokens -> 250 codes (5 s); 160+ -> 4096

`generate` caps by the Thinker's `max_new_tokens` before it starts and, once the reply exists, by its real length
(the longest row of a batch); a streamed reply is capped by `max_new_tokens` (its length is not known yet when the
Talker starts). An explicit `talker_max_new_tokens` always wins.
"""

from __future__ import annotations

CODES_PER_SECOND = 50
SECONDS_PER_TEXT_TOKEN = 0.5  # twice a typical speaking rate
MARGIN_SECONDS = 2.0
TALKER_MAX_CODES = 4096  # the Talker's limit before the cap existed (`talker_max_new_tokens`'s old default)


def speech_code_cap(text_tokens: int, limit: int = TALKER_MAX_CODES) -> int:
    """The most speech codes a reply of `text_tokens` text tokens may take (at least the 2 s margin)."""
    if isinstance(text_tokens, bool) or not isinstance(text_tokens, int) or text_tokens < 0:
        raise ValueError(f"text_tokens must be a non-negative int (the reply's length in tokens), got {text_tokens!r}")
    per_token = SECONDS_PER_TEXT_TOKEN * CODES_PER_SECOND
    return int(min(limit, MARGIN_SECONDS * CODES_PER_SECOND + per_token * text_tokens))


def talker_code_budget(talker_max_new_tokens: int | None, thinker_max_new_tokens: int | None) -> int:
    """The Talker's `max_new_tokens` for a request: the caller's value, else the cap of the longest reply the
    Thinker may write (`thinker_max_new_tokens`; without one, `TALKER_MAX_CODES`)."""
    if talker_max_new_tokens is not None:
        if isinstance(talker_max_new_tokens, bool) or not isinstance(talker_max_new_tokens, int):
            raise ValueError(f"talker_max_new_tokens must be an int, got {talker_max_new_tokens!r}")
        if talker_max_new_tokens < 1:
            raise ValueError(f"talker_max_new_tokens must be at least 1, got {talker_max_new_tokens}")
        return talker_max_new_tokens
    if thinker_max_new_tokens is None:
        return TALKER_MAX_CODES
    return speech_code_cap(int(thinker_max_new_tokens))


def cap_for_reply(budget: int, reply_tokens: int) -> int:
    """A derived budget narrowed to the reply actually written (`reply_tokens`, the longest row)."""
    return min(budget, speech_code_cap(reply_tokens))


def check_speech_arguments(has_talker: bool, return_audio: bool | None, speech_arguments: list[str]) -> None:
    """Refuse speech arguments (`talker_*` / `token2wav_*`) the model cannot honour: a model without its Talker
    (`disable_talker()`, `enable_audio_output=False`) would otherwise answer in text only and ignore them.
    An explicit `return_audio=False` (text wanted) lets them pass."""
    if has_talker or return_audio is False or not speech_arguments:
        return
    raise ValueError(
        f"{', '.join(sorted(speech_arguments))} given, but this model has no Talker/token2wav (disable_talker() or "
        "enable_audio_output=False): call model.enable_talker() and load its weights for speech, or drop them "
        "(return_audio=False for a text-only reply)"
    )


__all__ = [
    "CODES_PER_SECOND",
    "TALKER_MAX_CODES",
    "cap_for_reply",
    "check_speech_arguments",
    "speech_code_cap",
    "talker_code_budget",
]
