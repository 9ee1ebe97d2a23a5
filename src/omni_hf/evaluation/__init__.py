"""Evaluation: speech quality (WER/CER, speaker similarity, pause error, optional naturalness) and serving latency,
offline by default (pocketsphinx, Resemblyzer), with transformers checkpoints (Whisper, WavLM-SV) when named.

The heavy scorers are imported lazily (`from omni_hf.evaluation.asr import load_asr`, ...)."""

from .bench_serve import StreamTimer, percentiles
from .text import detect_language, error_rates, normalize_text

__all__ = ["StreamTimer", "detect_language", "error_rates", "normalize_text", "percentiles"]
