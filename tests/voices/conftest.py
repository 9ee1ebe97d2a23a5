"""Tiny random omni_hf models for the voice tests (built offline) and real speech from espeak-ng."""

import pytest

from omni_hf.testing.media import espeak_speech


@pytest.fixture(scope="session")
def tiny_voice_model_dir(tiny_omni_dir):
    return tiny_omni_dir


@pytest.fixture()
def voice_model(tiny_voice_model_dir):
    from omni_hf import OmniForConditionalGeneration

    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    return model


@pytest.fixture(scope="session")
def speech_clip():
    """`(samples, 22050 Hz)`: about 2.5 s of espeak-ng speech."""
    return espeak_speech("Hello there. This voice is a synthetic test speaker, nothing more.")


@pytest.fixture()
def foreign_voice(tmp_path):
    """`make(adapter_dir, part, grow)`: a copy of a saved voice whose `voice.json` claims a `part` ("talker" or
    "dit") with `hidden_size` larger by `grow`, i.e. an adapter made for another base model."""
    import json
    import shutil

    def make(adapter_dir, part: str, grow: int):
        foreign = tmp_path / f"foreign_{part}"
        shutil.copytree(adapter_dir, foreign)
        meta = json.loads((foreign / "voice.json").read_text())
        meta[part]["hidden_size"] += grow
        (foreign / "voice.json").write_text(json.dumps(meta))
        return foreign

    return make
