"""Seed-TTS-eval's text normalisation and WER/CER (jiwer) on known cases."""

import pytest

from omni_hf.evaluation.text import detect_language, error_rates, normalize_text


def test_normalisation_as_seed_tts_eval():
    assert normalize_text("Hello, World! It's  fine.") == "hello world it's fine"
    assert normalize_text("“Quoted” — dash; semi:colon") == "quoted dash semi colon"
    assert normalize_text("你好，世界。") == "你 好 世 界"
    assert detect_language("你好，世界。") == "zh" and detect_language("Hello") == "en"


def test_error_rates():
    assert error_rates("The cat sat.", "the cat sat") == {"wer": 0.0, "cer": 0.0}
    rates = error_rates("the cat sat on the mat", "the cat sat on a mat")
    assert rates["wer"] == pytest.approx(1 / 6) and rates["cer"] == pytest.approx(3 / 22)
    assert error_rates("one two", "") == {"wer": 1.0, "cer": 1.0}
    assert error_rates("你好世界", "你好世")["wer"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="empty text"):
        error_rates(" ,. ", "anything")
