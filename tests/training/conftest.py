"""Tiny random omni_hf model, a tiny random CTC ASR checkpoint (both built offline) and espeak-ng speech."""

import pytest

from helpers.recipes import load_recipe
from helpers.tiny_asr import build_tiny_ctc_asr


def load_dpo_recipe():
    return load_recipe("talker_dpo")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_omni_dir):
    return tiny_omni_dir


@pytest.fixture(scope="session")
def tiny_asr_dir(tmp_path_factory):
    return build_tiny_ctc_asr(tmp_path_factory.mktemp("tiny_asr"))


def load_model(path):
    from omni_hf import OmniForConditionalGeneration

    model = OmniForConditionalGeneration.from_pretrained(path).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    return model


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    from omni_hf.processing import OmniProcessor

    return load_model(tiny_model_dir), OmniProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def recipe():
    """recipes/talker_dpo.py as a module (its `main(argv)` is the real entry point)."""
    return load_dpo_recipe()


@pytest.fixture()
def new_model(tiny_model_dir):
    """A fresh copy of the tiny model (training changes it)."""
    return lambda: load_model(tiny_model_dir)
