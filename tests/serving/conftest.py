"""The tiny random full model for the serving tests, and spoken questions from espeak-ng."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_omni(tiny_omni_dir):
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor

    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    return model, OmniProcessor.from_pretrained(tiny_omni_dir)


def spoken(text: str, rate: int) -> np.ndarray:
    """`text` read by espeak-ng, resampled to `rate` Hz, float32 mono."""
    from scipy.signal import resample_poly

    from omni_hf.testing.media import espeak_speech

    audio, source = espeak_speech(text)
    return resample_poly(audio, rate, source).astype(np.float32)


@pytest.fixture(scope="session")
def speech():
    return spoken


@pytest.fixture(scope="session")
def question_16k():
    return spoken("What is the weather like in Paris today?", 16000)
