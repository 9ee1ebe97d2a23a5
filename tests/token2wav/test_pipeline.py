"""OmniToken2WavPipeline: against the reference token2wav end to end, save/load, outputs, bad input."""

import numpy as np
import pytest
import torch

from omni_hf.testing.tiny import reinit_, tiny_token2wav_config_dict
from omni_hf.token2wav import OmniToken2WavPipeline


@pytest.fixture(scope="module")
def pair():
    from transformers import Qwen2_5OmniToken2WavConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniToken2WavModel

    torch.manual_seed(0)
    reference = Qwen2_5OmniToken2WavModel(Qwen2_5OmniToken2WavConfig(**tiny_token2wav_config_dict())).eval()
    reinit_(reference.code2wav_dit_model, std=0.05, seed=2)
    reinit_(reference.code2wav_bigvgan_model, std=0.3, seed=3)
    state = {f"token2wav.{k}": v for k, v in reference.state_dict().items()}
    pipe = OmniToken2WavPipeline.from_official(tiny_token2wav_config_dict(), state)
    pipe.set_progress_bar_config(disable=True)
    return reference, pipe


@pytest.fixture(scope="module")
def speaker():
    g = torch.Generator().manual_seed(5)
    return {
        "reference_mel": torch.randn(1, 60, 80, generator=g) - 5,
        "speaker_embedding": torch.randn(1, 24, generator=g),
    }


def test_waveform_matches_reference(pair, speaker):
    reference, pipe = pair
    codes = torch.randint(0, 8192, (1, 37), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(11)
    with torch.no_grad():
        expected = reference(codes, conditioning=speaker["speaker_embedding"], reference_mel=speaker["reference_mel"])
    got = pipe(codes, **speaker, generator=torch.Generator().manual_seed(11)).audios
    assert got.shape == (1, 37 * 480)  # 2 mel frames per code, 240 samples per frame
    assert expected.abs().max() > 1e-3
    assert (got[0] - expected.reshape(-1)).abs().max() <= 1e-4


def test_output_types_solvers_and_round_trip(pair, speaker, tmp_path):
    _, pipe = pair
    codes = torch.randint(0, 8192, (2, 12))
    mel = pipe(
        codes, **speaker, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="mel"
    ).audios
    assert mel.shape == (2, 80, 24)
    wav = pipe(codes, **speaker, num_inference_steps=4, solver="euler", output_type="np").audios
    assert isinstance(wav, np.ndarray) and wav.dtype == np.float32 and wav.shape == (2, 12 * 480)
    assert pipe.scheduler.config.solver == "rk4"  # a per-call solver does not change the pipeline's scheduler
    pipe.save_pretrained(tmp_path)
    again = OmniToken2WavPipeline.from_pretrained(tmp_path)
    again.set_progress_bar_config(disable=True)
    a = pipe(codes, **speaker, num_inference_steps=3, generator=torch.Generator().manual_seed(1)).audios
    b = again(codes, **speaker, num_inference_steps=3, generator=torch.Generator().manual_seed(1)).audios
    torch.testing.assert_close(a, b)


def test_bad_input_is_refused_clearly(pair, speaker):
    _, pipe = pair
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 8193\)"):
        pipe(torch.tensor([[5, 8294]]), **speaker)
    with pytest.raises(ValueError, match="non-empty"):
        pipe(torch.zeros(1, 0, dtype=torch.long), **speaker)
    with pytest.raises(ValueError, match="speaker conditioning"):
        pipe(torch.tensor([[5, 6]]))
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(torch.tensor([[5, 6]]), **speaker, num_inference_steps=1)
