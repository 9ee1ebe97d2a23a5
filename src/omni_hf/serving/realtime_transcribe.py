"""Input audio transcription for `/v1/realtime` (`audio.input.transcription` / `input_audio_transcription`) with the
evaluation harness's recognisers (`omni_hf.evaluation.asr.load_asr`).

`model` in the settings picks the recogniser: a name the harness knows offline (`pocketsphinx`, the default) or a
transformers ASR checkpoint (a local folder, or a Hub id already in the cache). OpenAI's model names
(`whisper-1`, `gpt-4o-transcribe`, ...; LiveKit and Pipecat send these by default) mean the offline default. One
recogniser per name is loaded, once, and shared by the sessions (calls are serialized: pocketsphinx's decoder is not
reentrant).
"""

import threading

import numpy as np

_OPENAI_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-latest")
_RECOGNISERS: dict = {}
_LOCK = threading.Lock()


def recogniser_name(settings: dict | None) -> str | None:
    model = (settings or {}).get("model")
    return None if model in (None, "", *_OPENAI_MODELS) or str(model).startswith("gpt-") else str(model)


def transcribe(clips: list, sampling_rate: int, settings: dict | None) -> str:
    """The text of a spoken item's audio (`clips`: float32 mono arrays at `sampling_rate`)."""
    from ..evaluation.asr import load_asr

    name = recogniser_name(settings)
    with _LOCK:
        if name not in _RECOGNISERS:
            _RECOGNISERS[name] = load_asr(name)
        audio = np.concatenate([np.asarray(c, dtype=np.float32) for c in clips]) if clips else np.zeros(0, np.float32)
        return _RECOGNISERS[name](audio, sampling_rate).strip()


__all__ = ["transcribe"]
