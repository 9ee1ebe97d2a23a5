"""Energy VAD and the streaming resampler of the realtime endpoint."""

import numpy as np
import pytest
from scipy.signal import resample_poly

from omni_hf.serving.vad import EnergyVAD, StreamingResampler, float_to_pcm16, pcm16_to_float


def test_vad_finds_speech_start_and_end_after_the_configured_silence(speech):
    talk = speech("Hello, how are you?", 24000)
    audio = np.concatenate([np.zeros(12000), talk, np.zeros(24000)]).astype(np.float32)
    vad = EnergyVAD(24000, threshold=0.5, silence_duration_ms=500)
    events = [e for i in range(0, audio.size, 2400) for e in vad.push(audio[i : i + 2400])]
    assert [e.kind for e in events] == ["speech_started", "speech_stopped"]
    voiced = np.flatnonzero(np.abs(talk) > 0.01)
    assert abs(events[0].sample - (12000 + voiced[0])) <= 480 * 2  # within two 20 ms frames
    assert abs(events[1].sample - (12000 + voiced[-1])) <= 480 * 2
    longer = EnergyVAD(24000, silence_duration_ms=1500)
    assert [e.kind for e in longer.push(audio)] == ["speech_started"]  # 1 s of silence is not enough
    with pytest.raises(ValueError, match="threshold"):
        EnergyVAD(threshold=2)


def test_resampler_output_does_not_depend_on_packet_sizes(speech):
    audio = speech("Testing the resampler", 24000)
    whole = StreamingResampler(24000, 16000).push(audio)
    parts = StreamingResampler(24000, 16000)
    packets = np.concatenate([parts.push(audio[i : i + 2400]) for i in range(0, audio.size, 2400)])
    assert whole.size == -(-audio.size * 2 // 3) and np.allclose(packets, whole, atol=1e-6)
    delay = 10  # causal filter: half its length at 48 kHz, in 16 kHz samples
    reference = resample_poly(audio, 2, 3)
    assert np.abs(whole[delay:] - reference[: whole.size - delay]).max() < 1e-3
    samples = np.array([0.0, 0.5, -1.0, 0.999], dtype=np.float32)
    assert np.allclose(pcm16_to_float(float_to_pcm16(samples)), samples, atol=1 / 32768)
    with pytest.raises(ValueError, match="even number"):
        pcm16_to_float(b"abc")
