"""Fixtures of the drop-in tests: a tiny official checkpoint saved by transformers (the oracle), a tiny Thinker, and a
subprocess runner in which `import omni_hf` is impossible."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from omni_hf.testing.tiny import reinit_, tiny_thinker_config_dict
from omni_hf.testing.tiny_official import save_tiny_official_omni


@pytest.fixture(scope="session")
def official_full(tmp_path_factory):
    """A tiny official-layout full checkpoint (thinker + talker + token2wav + spk_dict.pt) saved by transformers."""
    path = tmp_path_factory.mktemp("dropin_official")
    save_tiny_official_omni(path)
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
