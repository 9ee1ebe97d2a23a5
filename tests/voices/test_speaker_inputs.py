"""`add_speaker` / `build_speaker` inputs go through the media layer: int16 rescaled, bf16 tensors, missing files,
folders, .mp3 / .mp4 (audio track) and a bad `max_seconds` each give the right speaker or a clear error."""

import subprocess

import numpy as np
import pytest
import soundfile
import torch

from omni_hf.voices.speaker_builder import build_speaker
from omni_hf.voices.speakers import Speaker


@pytest.fixture(scope="module")
def base():
    return Speaker("Base", 7, torch.zeros(1, 192), torch.zeros(1, 300, 80))


def test_int16_reference_gives_the_float_reference_mel(base, speech_clip):
    audio, rate = speech_clip
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    from_float = build_speaker(pcm.astype(np.float32) / 32768, "F", base, sampling_rate=rate)
    from_int16 = build_speaker(pcm, "I", base, sampling_rate=rate)
    torch.testing.assert_close(
        from_int16.reference_mel, from_float.reference_mel, rtol=0, atol=1e-5
    )  # not 32768x louder


def test_bf16_tensor_reference(base, speech_clip):
    audio, rate = speech_clip
    speaker = build_speaker(torch.from_numpy(audio).to(torch.bfloat16), "B", base, sampling_rate=rate)
    reference = build_speaker(audio, "R", base, sampling_rate=rate)
    assert (
        speaker.reference_mel.shape == reference.reference_mel.shape and speaker.reference_mel.dtype == torch.float32
    )
    assert (speaker.reference_mel - reference.reference_mel).abs().mean() < 0.05


def test_missing_file_folder_and_bad_max_seconds(base, speech_clip, tmp_path):
    audio, rate = speech_clip
    with pytest.raises(FileNotFoundError, match=r"Audio file not found: .*nope\.wav"):
        build_speaker(tmp_path / "nope.wav", "X", base)
    with pytest.raises(IsADirectoryError, match=r"is a directory, not a file"):
        build_speaker(tmp_path, "X", base)
    with pytest.raises(ValueError, match=r"max_seconds must be positive .* got max_seconds=-1"):
        build_speaker(audio, "X", base, sampling_rate=rate, max_seconds=-1)
    with pytest.raises(ValueError, match="Pass sampling_rate with reference audio <array"):
        build_speaker(audio, "X", base)


def test_mp3_and_mp4_references(base, speech_clip, tmp_path):
    audio, rate = speech_clip
    wav = tmp_path / "me.wav"
    soundfile.write(wav, audio, rate)
    reference = build_speaker(wav, "W", base)
    for name, extra in (("me.mp3", []), ("me.mp4", ["-f", "lavfi", "-i", "color=c=black:s=32x32:r=5", "-shortest"])):
        out = tmp_path / name
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), *extra, str(out)], check=True)
        speaker = build_speaker(out, "M", base)
        frames = min(speaker.reference_mel.shape[1], reference.reference_mel.shape[1])
        assert abs(speaker.reference_mel.shape[1] - reference.reference_mel.shape[1]) <= 10, name
        diff = (speaker.reference_mel[:, :frames] - reference.reference_mel[:, :frames]).abs().mean()
        assert diff < 1.0, name  # the same speech through a lossy codec
