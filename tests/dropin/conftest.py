"""Fixtures of the drop-in tests: a tiny official checkpoint saved by transformers (the oracle), a tiny Thinker, and a
subprocess runner in which `import omni_hf` is impossible."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from omni_hf.testing.tiny import (
    TINY_SPEAKER_BOS,
    reinit_,
    tiny_talker_config_dict,
    tiny_thinker_config_dict,
    tiny_token2wav_config_dict,
)


@pytest.fixture(scope="session")
def official_full(tmp_path_factory):
    """A tiny official-layout full checkpoint (thinker + talker + token2wav + spk_dict.pt) saved by transformers."""
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen2_5OmniConfig(
        thinker_config=tiny_thinker_config_dict(),
        talker_config=tiny_talker_config_dict(),
        token2wav_config=tiny_token2wav_config_dict(),
    )
    reference = Qwen2_5OmniForConditionalGeneration(config).eval()
    reinit_(reference.thinker)
    reinit_(reference.talker, std=0.1, seed=1)
    reinit_(reference.token2wav.code2wav_dit_model, std=0.05, seed=2)
    reinit_(reference.token2wav.code2wav_bigvgan_model, std=0.3, seed=3)
    path = tmp_path_factory.mktemp("dropin_official")
    reference.save_pretrained(path)
    generator = torch.Generator().manual_seed(4)
    speakers = {
        name: {
            "bos_token": bos,
            "cond": torch.randn(1, 24, generator=generator),
            "ref_mel": torch.randn(1, 60, 80, generator=generator) - 5,
        }
        for name, bos in TINY_SPEAKER_BOS.items()
    }
    torch.save(speakers, path / "spk_dict.pt")
    return path


@pytest.fixture(scope="session")
def tiny_thinker():
    from omni_hf import OmniThinkerConfig, OmniThinkerForConditionalGeneration
    from omni_hf.thinker.configuration_thinker import translate_official_thinker_config

    torch.manual_seed(0)
    config = OmniThinkerConfig(**translate_official_thinker_config(tiny_thinker_config_dict()))
    return reinit_(OmniThinkerForConditionalGeneration(config)).eval()


def run_without_omni_hf(script: str, tmp_path, timeout: int = 300) -> str:
    """Run `script` in a fresh interpreter where `import omni_hf` fails; returns stdout (asserts a zero exit)."""
    prelude = 'import sys\nsys.modules["omni_hf"] = None  # only the checkpoint\'s own code may be used\n'
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="session")
def without_omni_hf():
    return run_without_omni_hf


# The vendored transformers test helpers are imported by test_transformers_generic.py, not collected themselves.
collect_ignore_glob = ["_transformers_tests/*"]
