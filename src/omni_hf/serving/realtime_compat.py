"""What voice-agent frameworks put in `session.update` / `response.create` that the model cannot honour as asked,
and how each is mapped (see the README, "Use with LiveKit Agents / Pipecat").

- An OpenAI voice name (`alloy`, `marin`, ... : LiveKit's default is `marin`, Pipecat's `alloy`) → the session's
  default speaker, logged; the `session.updated` reply shows the speaker used. Any other unknown voice is an `error`
  naming `session.voice` while the rest of the update applies.
- `semantic_vad` → `server_vad` with a longer end-of-turn wait (eagerness low 1500 ms, medium/auto 1000 ms,
  high 500 ms of silence); `session.updated` shows `semantic_vad` with the wait used.
- `noise_reduction`, `speed`, `tracing`, `truncation`, `include`, `prompt`, `temperature`: accepted and ignored
  (no effect on a local model's reply), logged once.
- `input_audio_transcription` / `audio.input.transcription`: kept for the transcription events.
"""

import logging

logger = logging.getLogger(__name__)

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin", "cedar"}
)
SEMANTIC_WAIT_MS = {"low": 1500, "medium": 1000, "auto": 1000, "high": 500}
IGNORED = ("noise_reduction", "input_audio_noise_reduction", "speed", "tracing", "truncation", "include", "prompt",
           "temperature", "client_secret", "object", "id", "expires_at")  # fmt: skip


def normalize_session(session, speakers, default_voice: str) -> tuple[dict, list[tuple[str, str]]]:
    """A copy of a `session.update` payload the strict checks accept, and the `(param, message)` of each field that
    is mapped or refused (refused fields are removed, so that the rest of the update applies)."""
    if not isinstance(session, dict):
        return session, []
    session, notes = dict(session), []
    audio = session.get("audio")
    if isinstance(audio, dict):
        audio = session["audio"] = dict(audio)
        for key in ("input", "output"):
            if isinstance(audio.get(key), dict):
                audio[key] = dict(audio[key])
    audio_in = audio.get("input") if isinstance(audio, dict) and isinstance(audio.get("input"), dict) else {}
    audio_out = audio.get("output") if isinstance(audio, dict) and isinstance(audio.get("output"), dict) else {}
    for holder, key, param in (
        (session, "voice", "session.voice"),
        (audio_out, "voice", "session.audio.output.voice"),
    ):
        voice = holder.get(key)
        if isinstance(voice, str) and speakers and voice not in speakers:
            if voice in OPENAI_VOICES:
                logger.info("realtime: voice %r mapped to the speaker %r", voice, default_voice)
                holder[key] = default_voice
            else:
                del holder[key]
                notes.append((param, f"Unknown voice {voice!r}: this model speaks as {', '.join(sorted(speakers))}; "
                                     "the voice is unchanged, the rest of the update applies"))  # fmt: skip
    for holder, key in ((session, "turn_detection"), (audio_in, "turn_detection")):
        turn = holder.get(key)
        if isinstance(turn, dict) and turn.get("type") == "semantic_vad":
            eagerness = turn.get("eagerness", "auto")
            holder[key] = {
                "type": "semantic_vad",
                "silence_duration_ms": SEMANTIC_WAIT_MS.get(eagerness, 1000),
                "create_response": turn.get("create_response", True),
                "interrupt_response": turn.get("interrupt_response", True),
            }
        elif isinstance(turn, dict):
            holder[key] = {k: v for k, v in turn.items() if k not in ("idle_timeout_ms",)}
    for holder in (session, audio_in, audio_out):
        for key in IGNORED:
            holder.pop(key, None)
    for key in ("input_audio_transcription",):
        session.pop(key, None)
    audio_in.pop("transcription", None)
    for key in ("tools", "tool_choice"):
        session.pop(key, None)
    if session.get("type") not in (None, "realtime"):
        notes.append(("session.type", f"Only realtime sessions are served, got {session.get('type')!r}"))
    session.pop("type", None)
    session.pop("model", None)
    return session, notes


def transcription_settings(session) -> tuple[bool, dict | None]:
    """`(given, settings)` of the input transcription in a `session.update` payload (GA or beta shape)."""
    if not isinstance(session, dict):
        return False, None
    if "input_audio_transcription" in session:
        return True, session["input_audio_transcription"]
    audio = session.get("audio")
    audio_in = audio.get("input") if isinstance(audio, dict) else None
    if isinstance(audio_in, dict) and "transcription" in audio_in:
        return True, audio_in["transcription"]
    return False, None


__all__ = ["OPENAI_VOICES", "normalize_session", "transcription_settings"]
