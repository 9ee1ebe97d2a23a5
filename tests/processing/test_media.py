"""Media loading: formats, resampling, downmixing, frame sampling, and one clear error per bad input."""

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omni_hf.processing import VideoClip, as_video_clip, load_audio, load_image, load_video, resample_audio
from omni_hf.processing.image_processing import sample_frame_indices, smart_nframes
from omni_hf.testing.media import make_waveform

# ------------------------------------------------------------------------------------------------------ audio


@pytest.mark.parametrize("key, seconds", [("wav", 1.5), ("flac", 1.0), ("ogg", 1.0), ("mp3", 1.0)])
def test_audio_files_decode_to_16k_mono(media, key, seconds):
    audio = load_audio(media[key])
    assert audio.dtype == np.float32 and audio.ndim == 1
    # mp3/ogg encoders add a few ms of padding; wav/flac are exact.
    assert abs(len(audio) - seconds * 16000) <= (0 if key in ("wav", "flac") else 0.1 * 16000)
    assert np.abs(audio).max() <= 1.0 + 1e-4 and np.abs(audio).max() > 0.1


@pytest.mark.parametrize("key, rate", [("wav_44k_stereo", 44100), ("wav_8k", 8000)])
def test_resampling_44k_and_8k(media, key, rate):
    audio = load_audio(media[key])
    assert len(audio) == 16000
    # Same tones (440 Hz first) as a signal generated directly at 16 kHz: compare the dominant frequency.
    spectrum = np.abs(np.fft.rfft(audio[:4000]))
    assert abs(np.argmax(spectrum) * 16000 / 4000 - 440) <= 8
    stereo, _ = sf.read(media[key], dtype="float32", always_2d=True)
    np.testing.assert_allclose(
        audio, resample_audio(stereo.mean(axis=1), rate, 16000), atol=1e-6, err_msg="downmix then resample_poly"
    )


def test_audio_arrays_tuples_dicts_and_int_pcm():
    wave = make_waveform(1.0, 16000)
    np.testing.assert_array_equal(load_audio(wave), wave)
    stereo_44k = make_waveform(0.5, 44100, channels=2)
    assert load_audio((stereo_44k, 44100)).shape == (8000,)
    assert load_audio({"array": stereo_44k.T, "sampling_rate": 44100}).shape == (8000,)  # (channels, samples)
    assert load_audio(make_waveform(0.5, 8000), sampling_rate=8000).shape == (8000,)
    pcm = (wave * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm), wave, atol=1e-4)


def test_audio_errors(media, tmp_path):
    with pytest.raises(FileNotFoundError, match="Audio file not found: .*missing.wav"):
        load_audio(str(tmp_path / "missing.wav"))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.wav' is empty \(0 bytes\)"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(ValueError, match=r"Could not decode audio file .*corrupt\.wav.*corrupt"):
        load_audio(tmp_path / "corrupt.wav")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"Unsupported audio format '\.txt' .*notes\.txt.*expected one of \.wav"):
        load_audio(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"Audio <array shape=\(0,\).*is empty"):
        load_audio(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_audio(np.array([0.0, np.nan, 0.1], np.float32))
    with pytest.raises(ValueError, match="Unsupported audio input <int>"):
        load_audio(3)


# ------------------------------------------------------------------------------------------------------ images


def test_images_load_from_path_pil_and_array(media):
    from_path = load_image(media["png"])
    assert isinstance(from_path, Image.Image) and from_path.size == (224, 168)
    array = np.asarray(from_path)
    assert load_image(array) is array
    assert load_image(from_path) is from_path


def test_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Image file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png' is empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(ValueError, match=r"Could not decode image file .*corrupt\.png"):
        load_image(tmp_path / "corrupt.png")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(ValueError, match=r"Unsupported image format '\.pdf'"):
        load_image(tmp_path / "doc.pdf")
    with pytest.raises(ValueError, match=r"is 10x12 pixels: too small to patch, both sides must be at least 28"):
        load_image(Image.new("RGB", (10, 12)))
    with pytest.raises(ValueError, match=r"is 6000x28 pixels: aspect ratio 214.3 exceeds the maximum of 200"):
        load_image(np.zeros((28, 6000, 3), np.uint8))
    with pytest.raises(ValueError, match=r"Image array of shape \(5, 5, 7\)"):
        load_image(np.zeros((5, 5, 7), np.uint8))


# ------------------------------------------------------------------------------------------------------ video


def test_smart_nframes_follows_official_rules():
    assert smart_nframes(20, 10.0) == 4  # 2 s at 2 fps
    assert smart_nframes(300, 30.0) == 20  # 10 s at 2 fps
    assert smart_nframes(5, 10.0) == 4  # min 4 frames, even
    assert smart_nframes(3, 10.0) == 2  # fewer frames than the minimum: all available, rounded to even
    assert smart_nframes(10_000, 1.0) == 768  # max frames
    assert smart_nframes(41, 10.0, fps=1.0) == 4
    with pytest.raises(ValueError, match="Cannot sample frames"):
        smart_nframes(1, 10.0)
    np.testing.assert_array_equal(sample_frame_indices(20, 4), [0, 6, 13, 19])


def test_video_loading_with_and_without_audio(media):
    clip = load_video(media["video"], with_audio=True)
    assert clip.frames.shape == (4, 84, 112, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(2.0)
    assert clip.audio.dtype == np.float32 and abs(len(clip.audio) - 32000) < 1600  # 2 s (+ aac priming)
    # The box moves from left to right: its column shifts between the first and last sampled frame.
    assert not np.array_equal(clip.frames[0], clip.frames[-1])
    silent = load_video(media["video_silent"])
    assert silent.audio is None and silent.num_frames == 4
    long = load_video(media["video_long"], fps=2.0)
    assert long.num_frames == 8 and long.fps == pytest.approx(2.0)


def test_video_errors(media, tmp_path):
    with pytest.raises(ValueError, match=r"silent\.mp4' has no audio track, but its audio was requested"):
        load_video(media["video_silent"], with_audio=True)
    with pytest.raises(FileNotFoundError, match="Video file not found"):
        load_video(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4' is empty"):
        load_video(tmp_path / "empty.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x07" * 200)
    with pytest.raises(ValueError, match=r"Could not (open|decode) video file .*corrupt\.mp4.*corrupt"):
        load_video(tmp_path / "corrupt.mp4")
    (tmp_path / "anim.gif").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match=r"Could not open video file .*anim\.gif"):  # GIFs are read as videos
        load_video(tmp_path / "anim.gif")
    with pytest.raises(ValueError, match="no video stream"):
        _audio_only_mp4(tmp_path)


def _audio_only_mp4(tmp_path):
    import av

    path = tmp_path / "audio_only.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return load_video(path)


def test_frame_arrays_become_clips():
    frames = np.zeros((3, 56, 84, 3), np.uint8)
    clip = as_video_clip(frames, fps=4.0)
    assert isinstance(clip, VideoClip) and clip.fps == 4.0 and clip.audio is None
    assert as_video_clip(frames.transpose(0, 3, 1, 2)).frames.shape == (3, 56, 84, 3)
    assert as_video_clip([Image.new("RGB", (84, 56))] * 2).frames.shape == (2, 56, 84, 3)
    with pytest.raises(ValueError, match="too small to patch"):
        as_video_clip(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="Unsupported video input"):
        as_video_clip(np.zeros((8, 8, 3), np.uint8))
