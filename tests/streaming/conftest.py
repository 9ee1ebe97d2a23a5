"""A tiny random omni_hf model (Thinker + Talker + token2wav + two speakers) and its processor, built offline."""

import pytest

from omni_hf.testing.demo import build_demo_model


@pytest.fixture(scope="session")
def tiny_omni(tmp_path_factory):
    from omni_hf.models import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor

    path = build_demo_model(tmp_path_factory.mktemp("tiny_omni"))
    model = OmniForConditionalGeneration.from_pretrained(path).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    model.source_dir = path  # for tests of the command line
    return model, OmniProcessor.from_pretrained(path)
