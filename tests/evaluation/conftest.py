"""Evaluation tests: real speech from espeak-ng with known transcripts, scored by the offline models (pocketsphinx's
English model, Resemblyzer's speaker encoder) that ship in their wheels; `omni-hf serve` on the tiny model."""

import pytest

# Harvard sentences (IEEE 1969), read by espeak-ng's Klatt voice: pocketsphinx's acoustic model does best on it.
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
]
VOICE, OTHER_VOICE, SPEED = "en-us+klatt", "en-us+f3", 140


@pytest.fixture(scope="session")
def espeak():
    """`espeak(text, voice=VOICE) -> (float32 samples, 22050)`."""
    from omni_hf.testing.media import espeak_speech

    cache = {}

    def speak(text, voice=VOICE):
        if (text, voice) not in cache:
            cache[text, voice] = espeak_speech(text, voice=voice, speed=SPEED)
        return cache[text, voice]

    return speak


@pytest.fixture(scope="session")
def other_voice():
    return OTHER_VOICE


@pytest.fixture(scope="session")
def sentences():
    return SENTENCES


@pytest.fixture(scope="session")
def pocketsphinx():
    from omni_hf.evaluation.asr import load_asr

    return load_asr()


@pytest.fixture(scope="session")
def resemblyzer():
    from omni_hf.evaluation.speaker import load_speaker_encoder

    return load_speaker_encoder()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: Resemblyzer's LSTM on two threads of a busy 2-core machine was ~100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
