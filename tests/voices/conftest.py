"""Tiny random omni_hf models for the voice tests (built offline) and real speech from espeak-ng."""

import pytest

from omni_hf.testing.demo import build_demo_model
from omni_hf.testing.media import espeak_speech


@pytest.fixture(scope="session")
def tiny_voice_model_dir(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("tiny_voice_model"))


@pytest.fixture()
def voice_model(tiny_voice_model_dir):
    from omni_hf.models import OmniForConditionalGeneration

    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    return model


@pytest.fixture(scope="session")
def speech_clip():
    """`(samples, 22050 Hz)`: about 2.5 s of espeak-ng speech."""
    return espeak_speech("Hello there. This voice is a synthetic test speaker, nothing more.")
