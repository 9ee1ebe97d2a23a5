"""Text normalisation and error rates as Seed-TTS-eval computes them (its `run_wer.py`).

Seed-TTS-eval removes every punctuation mark but the apostrophe (Chinese and ASCII punctuation), collapses double
spaces, lower-cases English, and scores Chinese by characters (each character a "word"). WER and CER come from jiwer
on the normalised texts. Punctuation here is every Unicode `P*` character (which covers Chinese punctuation without
the `zhon` package) and the ASCII symbols of `string.punctuation`.
"""

from __future__ import annotations

import re
import string
import unicodedata

import jiwer

_ASCII_MARKS = set(string.punctuation) - {"'"}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _is_mark(ch: str) -> bool:
    return ch != "'" and (ch in _ASCII_MARKS or unicodedata.category(ch).startswith("P"))


def detect_language(text: str) -> str:
    """`"zh"` when most letters of `text` are CJK ideographs, else `"en"`."""
    letters = [ch for ch in text if ch.isalpha()]
    cjk = sum(1 for ch in letters if _CJK.match(ch))
    return "zh" if letters and cjk * 2 >= len(letters) else "en"


def normalize_text(text: str, language: str | None = None) -> str:
    """Seed-TTS-eval's normalisation: punctuation (but `'`) removed, spaces collapsed, English lower-cased, Chinese
    split into characters. `language`: "en", "zh" or None (detected)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    language = language or detect_language(text)
    cleaned = "".join(" " if _is_mark(ch) else ch for ch in unicodedata.normalize("NFKC", text))
    if language == "zh":
        return " ".join(ch for ch in cleaned if not ch.isspace())
    return " ".join(cleaned.lower().split())


def error_rates(reference: str, hypothesis: str, language: str | None = None) -> dict[str, float]:
    """`{"wer", "cer"}` of `hypothesis` against `reference` after `normalize_text` (an empty hypothesis: 1.0 each).

    Raises:
        ValueError: the reference has no word after normalisation (nothing to score against).
    """
    language = language or detect_language(reference)
    ref = normalize_text(reference, language)
    if not ref:
        raise ValueError(f"empty text: the reference {reference!r} has no word to score against")
    hyp = normalize_text(hypothesis or "", language)
    if not hyp:
        return {"wer": 1.0, "cer": 1.0}
    if language == "zh":  # characters are the words: CER is the WER of the character sequence
        return {"wer": float(jiwer.wer(ref, hyp)), "cer": float(jiwer.wer(ref, hyp))}
    return {"wer": float(jiwer.wer(ref, hyp)), "cer": float(jiwer.cer(ref, hyp))}


__all__ = ["detect_language", "error_rates", "normalize_text"]
