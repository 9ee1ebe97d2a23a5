"""Streaming token2wav: chunks equal the offline decode on the same codes and noise; the vocoder stitches exactly.

Why the comparison is with the *windowed* offline decode: each DiT evaluation lets a block see one block ahead, so
over the ODE's 36 evaluations a block of the global solution depends on codes ~36 blocks ahead; a stream that emits
a block once its look-ahead block exists must solve each chunk in a window (as Qwen's own streaming does). The
windows depend on block indices only, so the stream must equal `pipeline(..., window=W)` exactly (≤ 1e-4), and the
global decode whenever the window spans the whole utterance.
"""

import pytest
import torch

from omni_hf.testing.tiny import reinit_, tiny_token2wav_config_dict
from omni_hf.token2wav import OmniToken2WavPipeline
from omni_hf.token2wav.bigvgan import BigVGANVocoder
from omni_hf.token2wav.streaming import StreamingWindow, Token2WavStream, VocoderStream


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    pipe = OmniToken2WavPipeline.from_official(tiny_token2wav_config_dict(), {})
    reinit_(pipe.dit, std=0.3, seed=2)  # strong enough that blocks influence each other through attention
    reinit_(pipe.vocoder, std=0.05, seed=3)  # unsaturated output (the vocoder clamps to ±1)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def utterance():
    g = torch.Generator().manual_seed(5)
    speaker = {
        "reference_mel": torch.randn(1, 60, 80, generator=g) - 5,
        "speaker_embedding": torch.randn(1, 24, generator=g),
    }
    codes = torch.randint(0, 8192, (1, 101), generator=g)
    return speaker, codes, torch.randn(1, 202, 80, generator=g)


def _pieces(codes, sizes):
    out, i = [], 0
    while i < codes.shape[1]:
        size = sizes[len(out) % len(sizes)]
        out.append(codes[0, i : i + size])
        i += size
    return out


def test_stream_equals_windowed_offline_decode(pipe, utterance):
    speaker, codes, noise = utterance
    window = StreamingWindow(chunk_blocks=(1, 2, 3), past_blocks=2, future_blocks=1)
    offline = pipe(codes, **speaker, latents=noise, window=window).audios[0]
    chunks = list(pipe.stream(_pieces(codes, [7, 1, 13]), **speaker, window=window, latents=noise))
    assert len(chunks) >= 3  # audio left in several pieces
    streamed = torch.cat(chunks)
    assert streamed.shape == offline.shape == (101 * 480,)
    assert offline.abs().max() > 1e-3
    assert (streamed - offline).abs().max() <= 1e-4
    # The windows are a real approximation of the global ODE with this DiT (so the test above is not vacuous) ...
    mel_global = pipe(codes, **speaker, latents=noise, output_type="mel").audios
    mel_window = pipe(codes, **speaker, latents=noise, window=window, output_type="mel").audios
    assert (mel_global - mel_window).abs().max() > 1e-4


def test_stream_equals_global_decode_when_the_window_spans_the_utterance(pipe, utterance):
    speaker, codes, noise = utterance
    wide = StreamingWindow(chunk_blocks=(1, 2), past_blocks=50, future_blocks=50)
    chunks = list(pipe.stream(_pieces(codes, [5]), **speaker, window=wide, latents=noise))
    assert len(chunks) >= 2  # several vocoder calls stitched together
    offline = pipe(codes, **speaker, latents=noise).audios[0]
    assert (torch.cat(chunks) - offline).abs().max() <= 1e-4


def test_generator_noise_is_drawn_per_block(pipe, utterance):
    speaker, codes, _ = utterance
    chunks = list(pipe.stream(_pieces(codes, [9]), **speaker, generator=torch.Generator().manual_seed(3)))
    g = torch.Generator().manual_seed(3)
    noise = torch.cat([torch.randn(1, 24, 80, generator=g) for _ in range(-(-202 // 24))], dim=1)
    offline = pipe(codes, **speaker, latents=noise[:, :202], window=StreamingWindow()).audios[0]
    assert (torch.cat(chunks) - offline).abs().max() <= 1e-4


def test_vocoder_stream_stitches_exactly():
    torch.manual_seed(0)
    vocoder = BigVGANVocoder(
        upsample_initial_channel=128, resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3, 5),) * 2
    ).eval()
    reinit_(vocoder, std=0.05, seed=1)
    mel = torch.randn(1, 80, 150) - 4
    with torch.no_grad():
        full = vocoder(mel)[0]
        # Receptive field: changing frame 75 leaves every sample outside ±receptive_field frames unchanged.
        bumped = mel.clone()
        bumped[..., 75] += 2
        changed = (vocoder(bumped)[0] - full).reshape(150, 240).abs().amax(-1) > 0
    reach = vocoder.receptive_field()
    frames = changed.nonzero().flatten()
    assert frames.numel() and frames.min() >= 75 - reach and frames.max() <= 75 + reach
    stream = VocoderStream(vocoder)
    pieces = [stream.push(mel[..., a:b]) for a, b in [(0, 10), (10, 11), (11, 70), (70, 150)]]
    pieces.append(stream.push(None, final=True))
    assert (torch.cat(pieces) - full).abs().max() <= 1e-5


def test_bad_input(pipe, utterance):
    speaker, codes, noise = utterance
    stream = Token2WavStream(pipe, **speaker, latents=noise[:, :50])
    with pytest.raises(ValueError, match="codes must lie in"):
        stream.push(torch.tensor([8500]))
    with pytest.raises(ValueError, match="latents cover 50 frames"):
        stream.push(codes[0])
    done = Token2WavStream(pipe, **speaker)
    assert done.finish() == []  # no codes: nothing to say
    with pytest.raises(RuntimeError, match="finished"):
        done.push(codes[0, :3])
    with pytest.raises(ValueError, match="chunk_blocks"):
        StreamingWindow(chunk_blocks=(0,))
    with pytest.raises(ValueError, match="speaker conditioning"):
        Token2WavStream(pipe, None, None)
