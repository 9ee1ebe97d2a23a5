"""A tiny random omni_hf model (Thinker + Talker + token2wav + two speakers) and its processor, built offline."""

import pytest


@pytest.fixture(scope="session")
def tiny_omni(tiny_omni_dir):
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor

    path = tiny_omni_dir
    model = OmniForConditionalGeneration.from_pretrained(path).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    model.source_dir = path  # for tests of the command line
    return model, OmniProcessor.from_pretrained(path)
