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


def test_diffusers_semantics_output_types_progress_and_default_speaker(pair, speaker, tmp_path):
    """output_type: "latent" is the ODE solution, unknown values are refused; the progress bar counts ODE steps
    under a label; a pipeline saved with a default speaker runs from its own folder with codes alone."""
    from omni_hf.token2wav import DiTSpeakerConditioning

    _, pipe = pair
    codes = torch.randint(0, 8192, (1, 12), generator=torch.Generator().manual_seed(3))
    noise = dict(num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    latent = pipe(codes, **speaker, output_type="latent", **noise).audios
    mel = pipe(codes, **speaker, output_type="mel", num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    assert latent.shape == (1, 24, 80) and torch.equal(latent.transpose(1, 2), mel.audios)
    for bad in ("pil", "wav"):
        with pytest.raises(ValueError, match=f"output_type must be one of .*got '{bad}'"):
            pipe(codes, **speaker, output_type=bad)

    bars = []

    class Bar:
        def __init__(self, total):
            self.total, self.n, self.desc = total, 0, None
            bars.append(self)

        def set_description(self, desc):
            self.desc = desc

        def update(self):
            self.n += 1

        def close(self):
            pass

    original = pipe.progress_bar
    pipe.progress_bar = lambda total=None, iterable=None: Bar(total)
    try:
        pipe(codes, **speaker, num_inference_steps=10)
    finally:
        pipe.progress_bar = original
    assert (bars[0].total, bars[0].n, bars[0].desc) == (9, 9, "token2wav ODE steps")  # 9 RK4 steps, not 36 calls

    with pytest.raises(ValueError, match="no default speaker"):
        pipe(codes)
    pipe.set_default_speaker(DiTSpeakerConditioning(speaker["reference_mel"], speaker["speaker_embedding"]))
    try:
        pipe.save_pretrained(tmp_path / "t2w")
    finally:
        pipe.set_default_speaker(None)
    again = OmniToken2WavPipeline.from_pretrained(tmp_path / "t2w")
    again.set_progress_bar_config(disable=True)
    alone = again(codes, generator=torch.Generator().manual_seed(4)).audios
    explicit = pipe(codes, **speaker, generator=torch.Generator().manual_seed(4)).audios
    assert torch.equal(alone, explicit)


def test_named_schedules(pair, speaker):
    _, pipe = pair
    codes = torch.randint(0, 8192, (1, 12), generator=torch.Generator().manual_seed(7))
    calls = []
    hook = pipe.dit.register_forward_hook(lambda *args: calls.append(1))
    try:
        fast = pipe(codes, **speaker, schedule="fast", generator=torch.Generator().manual_seed(1)).audios
    finally:
        hook.remove()
    same = pipe(codes, **speaker, solver="euler", num_inference_steps=9, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 8 and torch.equal(fast, same.audios)  # 8 Euler steps: 8 DiT evaluations, not 36
    with pytest.raises(ValueError, match="Unknown schedule 'quick'"):
        pipe(codes, **speaker, schedule="quick")


def test_loading_through_the_folders_own_code_warns_nothing(pair, tmp_path):
    """`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` used to warn "Expected types for dit ..."
    (the component classes are imported once per component folder); the pipeline now asks for Diffusers' bases."""
    import io
    import logging

    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    _, pipe = pair
    pipe.save_pretrained(tmp_path / "t2w")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = diffusers_logging.get_logger("diffusers")
    logger.addHandler(handler)
    try:
        loaded = DiffusionPipeline.from_pretrained(tmp_path / "t2w", trust_remote_code=True)
    finally:
        logger.removeHandler(handler)
    assert type(loaded).__name__ == "OmniToken2WavPipeline" and "omni_hf" not in type(loaded).__module__
    assert "Expected types" not in stream.getvalue()
