"""Parity of `BigVGANVocoder` with transformers' `Qwen2_5OmniToken2WavBigVGANModel` on tiny random weights."""

import pytest
import torch

from omni_hf.testing.tiny import reinit_, tiny_token2wav_config_dict
from omni_hf.token2wav.bigvgan import OFFICIAL_PREFIX, AntiAliasedSnakeBeta, BigVGANVocoder

# transformers' default init gives a ~1e-8 waveform: widen the weights (std 0.06 keeps the tiny net stable), give the
# snake-beta parameters and biases non-trivial values, and scale the output conv so the waveform spans ~[-1, 1].
WEIGHT_STD = 0.06
OUTPUT_GAIN = 40.0


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """These convolutions are tiny: one thread avoids OpenMP oversubscription on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bigvgan_config():
    return tiny_token2wav_config_dict()["bigvgan_config"]


@pytest.fixture(scope="module")
def reference(bigvgan_config):
    from transformers import Qwen2_5OmniBigVGANConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniToken2WavBigVGANModel

    model = Qwen2_5OmniToken2WavBigVGANModel(Qwen2_5OmniBigVGANConfig(**bigvgan_config)).eval()
    reinit_(model, std=WEIGHT_STD)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith((".alpha", ".beta")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
            elif name.endswith(".bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        model.conv_post.weight.mul_(OUTPUT_GAIN)
    return model


@pytest.fixture(scope="module")
def vocoder(reference, bigvgan_config):
    return BigVGANVocoder.from_official(reference.state_dict(), bigvgan_config).eval()


def _mel(batch, frames, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 80, frames, generator=generator) * 2.0 - 5.0  # natural-log mel, around the dB floor


def test_state_dict_keys_match_reference(reference, bigvgan_config):
    ours = BigVGANVocoder(**{k: v for k, v in bigvgan_config.items() if k != "model_type"})
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert "activation_post.act.alpha" in ours.state_dict()
    assert not any("filter" in key or "matrix" in key for key in ours.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)


def test_from_official_strips_prefix(reference, bigvgan_config):
    full = {OFFICIAL_PREFIX + k: v for k, v in reference.state_dict().items()}
    full["token2wav.code2wav_dit_model.proj_out.weight"] = torch.zeros(1)  # other sub-models are ignored
    model = BigVGANVocoder.from_official(full, bigvgan_config)
    assert model.config.upsample_initial_channel == bigvgan_config["upsample_initial_channel"]
    torch.testing.assert_close(model.conv_post.weight, reference.conv_post.weight)


@pytest.mark.parametrize("batch", [1, 2])
def test_matches_reference(reference, vocoder, batch):
    mel = _mel(batch, 50)
    with torch.no_grad():
        expected = reference(mel).reshape(batch, -1)  # the reference squeezes the batch axis away
        waveform = vocoder(mel)
    assert waveform.shape == (batch, 50 * 240) and waveform.dtype == torch.float32
    assert expected.abs().mean() > 0.1  # far from the ~1e-8 of the default init
    assert (waveform - expected).abs().max() <= 1e-4
    assert waveform.abs().max() <= 1.0


def test_anti_aliased_activation_matches_reference():
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniAntiAliasedActivation1d,
        Qwen2_5OmniSnakeBeta,
    )

    channels = 6
    reference = Qwen2_5OmniAntiAliasedActivation1d(Qwen2_5OmniSnakeBeta(channels))
    ours = AntiAliasedSnakeBeta(channels)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        reference.act.alpha.copy_(torch.randn(channels, generator=generator))
        reference.act.beta.copy_(torch.randn(channels, generator=generator))
    ours.load_state_dict(reference.state_dict())
    for length in (1, 7, 33, 100):  # shorter than, equal to and longer than one filter block; edges replicate
        hidden = torch.randn(2, channels, length, generator=generator) * 3
        with torch.no_grad():
            torch.testing.assert_close(ours(hidden), reference(hidden), atol=1e-5, rtol=1e-5)


def test_unbatched_input_and_clamp(vocoder):
    mel = _mel(1, 12, seed=3)
    with torch.no_grad():
        loud = vocoder(mel[0] + 8.0)  # saturating input: the output must stay within ±1
    assert loud.shape == (12 * 240,)
    assert loud.abs().max() <= 1.0


def test_save_and_load_round_trip(vocoder, tmp_path):
    vocoder.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = BigVGANVocoder.from_pretrained(tmp_path).eval()
    assert loaded.config.resblock_kernel_sizes == vocoder.config.resblock_kernel_sizes
    mel = _mel(2, 20, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), vocoder(mel), atol=0, rtol=0)


def test_wrong_mel_channels_raise(vocoder):
    with pytest.raises(ValueError, match="mel bins on dim 1"):
        vocoder(torch.zeros(1, 20, 80))  # (batch, frames, mel_dim) is the wrong layout
    with pytest.raises(ValueError, match="mel bins on dim 1"):
        vocoder(torch.zeros(1, 1, 64, 10))


def test_training_path_matches_inference_and_backpropagates(vocoder):
    mel = _mel(1, 8, seed=5)
    with torch.no_grad():
        fast = vocoder(mel)
    vocoder.zero_grad()
    waveform = vocoder(mel)  # grad mode: differentiable composition instead of the fused in-place snake
    torch.testing.assert_close(waveform, fast, atol=1e-5, rtol=1e-5)
    waveform.square().mean().backward()
    assert vocoder.resblocks[0].activations[0].act.alpha.grad.abs().sum() > 0
    assert vocoder.conv_pre.weight.grad.abs().sum() > 0
    vocoder.zero_grad()
