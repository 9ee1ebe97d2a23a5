"""Voices: custom speakers from a reference clip, a speech tokenizer (audio → codes), LoRA voice adapters."""
