"""Voices: custom speakers from a reference clip, a speech tokenizer (audio → codes), LoRA voice adapters."""

from .speakers import Speaker, SpeakerBank

__all__ = ["Speaker", "SpeakerBank"]
