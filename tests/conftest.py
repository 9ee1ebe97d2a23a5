"""Shared fixtures: tiny random models built locally (never downloaded) and transformers' reference as oracle."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from omni_hf.testing import reinit_, tiny_thinker_config_dict  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_config_dict():
    return tiny_thinker_config_dict()


@pytest.fixture(scope="session")
def reference_full(tmp_path_factory, tiny_config_dict):
    """A full Qwen2.5-Omni checkpoint saved by transformers (official names, `thinker.` prefix).

    The talker and token2wav are left out to keep it tiny; stand-in `talker.*`/`token2wav.*` tensors are added to
    the file so loading a thinker from a full checkpoint proves it ignores them.
    """
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(
        Qwen2_5OmniConfig(thinker_config=tiny_config_dict, enable_audio_output=False)
    ).eval()
    reinit_(model)
    path = tmp_path_factory.mktemp("reference_full")
    model.save_pretrained(path)
    weights = load_file(path / "model.safetensors")
    weights["talker.codec_head.weight"] = torch.randn(8, 4)
    weights["token2wav.code2wav_dit_model.proj_out.weight"] = torch.randn(4, 4)
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    return path, model.thinker


@pytest.fixture(scope="session")
def reference_full_dir(reference_full):
    return reference_full[0]


@pytest.fixture(scope="session")
def reference_thinker(reference_full):
    """transformers' own thinker with the checkpoint's weights (the oracle)."""
    return reference_full[1]


@pytest.fixture(scope="session")
def our_thinker(reference_full_dir):
    from omni_hf import OmniThinkerForConditionalGeneration

    return OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir).eval()


@pytest.fixture(scope="session")
def tiny_omni_dir(tmp_path_factory):
    """A tiny random full model (Thinker + Talker + token2wav + two speakers) and processor saved in our layout.

    Shared by the streaming, voice and training tests: treat it as read-only (copy it before writing into it)."""
    from omni_hf.testing.demo import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("tiny_omni"))


@pytest.fixture(scope="session")
def tiny_omni(tiny_omni_dir):
    """The tiny full model in eval mode and its processor (shared: do not change its weights or speakers)."""
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor

    path = tiny_omni_dir
    model = OmniForConditionalGeneration.from_pretrained(path).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    model.source_dir = path  # for tests of the command line
    return model, OmniProcessor.from_pretrained(path)
