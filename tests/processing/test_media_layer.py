"""The audio and media layer's edge cases (issue 14 items 4, 5, 7): each gives the right result or a clear error
naming the input, budgets are checked from headers before decoding, and long input never desynchronises streams."""

import base64
import io
import struct
import subprocess
import warnings
import zlib
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from omni_hf.processing import (
    AUDIO_EXTENSIONS,
    check_audio_samples,
    check_generation_budget,
    load_audio,
    load_image,
    load_video,
    preprocess_video,
)
from omni_hf.processing.image_processing import resize_frames, smart_resize
from omni_hf.testing.media import make_waveform, write_video, write_wav

# ------------------------------------------------------------------------------------------------------ samples


def test_check_audio_samples_refuses_nan_and_unscaled_int16():
    wave = make_waveform(0.5)
    with pytest.raises(ValueError, match=r"contains 1 NaN or infinite"):
        check_audio_samples(np.concatenate([wave, [np.inf]]), 16000, 16000)
    with pytest.raises(ValueError, match=r"float samples up to \d+.*divide int16 samples by 32768"):
        check_audio_samples((wave * 32767).astype(np.float32), 16000)
    with pytest.raises(ValueError, match="at 8000 Hz; 16000 Hz is expected"):
        check_audio_samples(wave, 8000, 16000)
    pcm = (wave * 32767).astype(np.int16)
    np.testing.assert_allclose(check_audio_samples(pcm, 16000, 16000), wave, atol=1e-4)  # int16 rescaled
    bf16 = check_audio_samples(torch.from_numpy(wave).to(torch.bfloat16), 16000)
    assert bf16.dtype == np.float32 and np.abs(bf16 - wave).max() < 1e-2


def test_loader_reads_every_type_the_space_accepts(tmp_path):
    """.m4a and .webm (browser recordings) are decoded through PyAV, and so is the audio track of an .mp4."""
    wav = write_wav(tmp_path / "src.wav", duration=1.0, sampling_rate=22050)
    reference = load_audio(wav)
    for ext, codec in ((".m4a", "aac"), (".webm", "libopus")):
        out = tmp_path / f"clip{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-i", wav, "-c:a", codec, str(out)], check=True)
        got = load_audio(out)
        assert abs(len(got) - len(reference)) < 0.05 * 16000, ext  # ~1 s at 16 kHz (codec padding aside)
        assert 0.2 < np.abs(got).max() <= 1.0
    assert ".m4a" in AUDIO_EXTENSIONS and ".webm" in AUDIO_EXTENSIONS
    track = load_audio(write_video(tmp_path / "v.mp4", duration=1.0))
    assert abs(len(track) - 16000) < 1200
    blob = open(wav, "rb").read()
    np.testing.assert_array_equal(load_audio(blob), reference)  # bytes go through the same reader


def test_truncated_wav_is_refused(tmp_path):
    path = write_wav(tmp_path / "full.wav", duration=3.0)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(open(path, "rb").read()[: 44 + int(0.31 * 16000) * 2])
    with pytest.raises(ValueError, match=r"cut\.wav' is truncated: its header promises 3\.00 s but it holds 0\.31 s"):
        load_audio(cut)


# ------------------------------------------------------------------------------------------------------ long input


def _never_called(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was called: the input should have been refused from its header")

    return fail


def test_long_recording_refused_from_header_or_cut_with_warning(tmp_path, processor, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(8000 * 1200, np.int16) + 100, 8000, subtype="PCM_16")  # 20 minutes at 8 kHz
    with monkeypatch.context() as patched:  # from the header: no sample is read (not a timing, which load can skew)
        patched.setattr(sf.SoundFile, "read", _never_called("SoundFile.read"))
        patched.setattr(av, "open", _never_called("av.open"))
        with pytest.raises(ValueError, match=r"long\.wav' lasts 1200\.0 s, more than the 300 s .*truncate"):
            load_audio(path, max_seconds=300)
    prompt = "<|audio_bos|><|AUDIO|><|audio_eos|>"
    with pytest.raises(ValueError, match="lasts 1200.0 s"):
        processor(text=prompt, audio=str(path))
    with pytest.warns(UserWarning, match=r"lasts 1200\.0 s: only its first 300 s are kept"):
        out = processor(text=prompt, audio=str(path), long_audio="truncate")
    assert int(out["feature_attention_mask"].sum()) == 30000  # exactly 300 s of features


def test_long_video_with_audio_is_cut_in_both_streams(tmp_path, processor):
    path = str(tmp_path / "ten.mp4")
    lavfi = [
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=32x32:r=1",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=8000",
    ]
    subprocess.run(["ffmpeg", "-v", "error", *lavfi, "-t", "302", "-c:v", "mpeg4", "-c:a", "aac", path], check=True)
    prompt = "<|vision_bos|><|VIDEO|><|vision_eos|>"
    with pytest.raises(ValueError, match=r"Video .*ten\.mp4' lasts 30\d\.\d s, more than the 300 s"):
        processor(text=prompt, videos=path, use_audio_in_video=True, fps=0.05)
    with pytest.warns(UserWarning, match="only its first 300 s are kept"):
        out = processor(text=prompt, videos=path, use_audio_in_video=True, long_audio="truncate", fps=0.05)
    video_seconds = int(out["video_grid_thw"][0, 0]) * float(out["video_second_per_grid"][0])
    audio_seconds = int(out["feature_attention_mask"].sum()) / 100
    assert abs(video_seconds - 300) <= 1 and audio_seconds == 300  # both streams end at 300 s
    frames_only = processor(text=prompt, videos=path, fps=0.05)  # no audio: the whole video
    assert int(frames_only["video_grid_thw"][0, 0]) * float(frames_only["video_second_per_grid"][0]) > 300


# ------------------------------------------------------------------------------------------------------ video


def _write_vfr(path, times, size=64):
    """An mp4 whose frame `i` is a flat grey of value 25*i, shown at `times[i]` seconds."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 25 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def test_variable_frame_rate_video_is_sampled_by_timestamp(tmp_path):
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 1.4, 2.0, 2.6, 3.12, 3.5]
    clip = load_video(_write_vfr(tmp_path / "vfr.mp4", times), fps=2.0)
    shown = np.round(clip.frames[:, 0, 0, 0] / 25).astype(int)
    targets = np.linspace(0, 3.5, clip.num_frames)
    expected = [int(np.argmin(np.abs(np.asarray(times) - t))) for t in targets]
    assert shown.tolist() == expected == [0, 4, 5, 6, 7, 9]  # by index it would be [0, 2, 4, 5, 7, 9]


def test_frames_are_resized_while_decoding_with_identical_patches(tmp_path, processor):
    path = write_video(tmp_path / "big.mp4", duration=2.0, fps=4, width=640, height=480, with_audio=False)
    ip = processor.image_processor
    resize = {"min_pixels": 128 * 28 * 28, "max_pixels": 256 * 28 * 28, "factor": 28, "resample": ip.resample}
    small = load_video(path, resize=resize)
    full = load_video(path)
    h, w = smart_resize(480, 640, 28, resize["min_pixels"], resize["max_pixels"])
    assert small.frames.shape[1:3] == (h, w) and full.frames.shape[1:3] == (480, 640)
    np.testing.assert_array_equal(small.frames, resize_frames(full.frames, h, w, ip.resample))
    a, grid_a = preprocess_video(small.frames, ip, resize["min_pixels"], resize["max_pixels"])
    b, grid_b = preprocess_video(full.frames, ip, resize["min_pixels"], resize["max_pixels"])
    assert grid_a == grid_b and np.array_equal(a, b)


def test_video_budgets_refuse_from_the_header(tmp_path, processor):
    path = write_video(tmp_path / "hd.mp4", duration=2.0, fps=4, width=320, height=240, with_audio=False)
    with pytest.raises(ValueError, match=r"hd\.mp4' \(320x240, 2\.0 s\) would take 187 tokens .* more than the 100"):
        load_video(path, max_tokens=100)
    with pytest.raises(ValueError, match=r"hd\.mp4' \(frame size\) is 320x240 = 0\.1 MP, more than the 0\.0 MP"):
        load_video(path, max_decode_pixels=1000)
    prompt = "<|vision_bos|><|VIDEO|><|vision_eos|>"
    with pytest.raises(ValueError, match="would take .* tokens"):
        processor(text=prompt, videos=path, max_length=50)


def test_pyav_errors_name_the_file(tmp_path):
    data = bytearray(open(write_video(tmp_path / "ok.mp4", duration=2.0), "rb").read())
    for i in range(2000, len(data) - 2000, 7):
        data[i] = (data[i] * 31 + 7) % 256
    (tmp_path / "mangled.mp4").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"Could not decode video file .*mangled\.mp4") as info:
        load_video(tmp_path / "mangled.mp4", with_audio=True)
    assert type(info.value) is ValueError  # not PyAV's InvalidDataError


# ------------------------------------------------------------------------------------------------------ images


def test_sixteen_bit_png_keeps_its_grey_levels(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    image = load_image(path)
    assert image.mode == "L"
    np.testing.assert_allclose(np.asarray(image, np.float64), ramp / 257.0, atol=0.51)
    rgb = np.asarray(image.convert("RGB"))
    assert rgb.mean() < 200 and rgb.min() == 0  # not white


def test_animated_gif_refused_as_image_and_read_as_video(tmp_path):
    frames = [Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)) for i in range(4)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=250, loop=0)
    with pytest.raises(ValueError, match=r"anim\.gif' is animated \(4 frames\): pass it as a video"):
        load_image(path)
    clip = load_video(path, fps=4.0)
    assert clip.num_frames == 4 and clip.frames[:, 0, 0, 0].tolist() == [0, 60, 120, 180]


def _png_header_only(path, width, height):
    """A PNG that declares `width` x `height` 8-bit grey pixels (no pixel data: only the header is read)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_png_refused_from_its_header(tmp_path, monkeypatch):
    path = _png_header_only(tmp_path / "huge.png", 10000, 10000)
    with monkeypatch.context() as patched:  # from the header: nothing decoded (not a timing, which load can skew)
        patched.setattr(Image.Image, "load", _never_called("Image.load"))
        with pytest.raises(ValueError, match=r"huge\.png' is 10000x10000 = 100\.0 MP, more than the 67\.1 MP"):
            load_image(path)


def test_image_token_budget_before_patching(media, processor):
    with pytest.raises(ValueError, match=r"Image #0 \(224x168, resized to 224x168\) takes 48 tokens, more than"):
        processor(text="<|vision_bos|><|IMAGE|><|vision_eos|>", images=media["png"], max_length=20)


# ------------------------------------------------------------------------------------------------------ clips


def test_too_short_clip_says_so(processor):
    prompt = "<|audio_bos|><|AUDIO|><|audio_eos|>"
    with pytest.raises(
        ValueError,
        match=r"Audio <array shape=\(320,\).* is too short: 20\.0 ms at 16 kHz; one audio token needs more than 20 ms",
    ):
        processor(text=prompt, audio=np.full(320, 0.1, np.float32))
    out = processor(text=prompt, audio=np.full(321, 0.1, np.float32))
    assert out["input_ids"][0].count(processor.audio_token_id) == 1


# ------------------------------------------------------------------------------------------------------ chat blocks


def _wav_bytes(seconds=0.5):
    buffer = io.BytesIO()
    sf.write(buffer, make_waveform(seconds), 16000, format="WAV")
    return buffer.getvalue()


def test_openai_blocks_are_supported(media, processor):
    png = base64.b64encode(open(media["png"], "rb").read()).decode()
    wav = base64.b64encode(_wav_bytes()).decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
                {"type": "text", "text": "What is this?"},
            ],
        },
        {"role": "assistant", "content": None},
    ]
    ours = processor.apply_chat_template(messages, tokenize=True, return_dict=True)
    plain = [
        {
            "role": "user",
            "content": [{"type": "image", "image": media["png"]}, {"type": "audio", "audio": _wav_bytes()}],
        }
    ]
    plain[0]["content"].append({"type": "text", "text": "What is this?"})
    plain.append({"role": "assistant", "content": ""})
    theirs = processor.apply_chat_template(plain, tokenize=True, return_dict=True)
    assert ours["input_ids"] == theirs["input_ids"]
    np.testing.assert_array_equal(ours["pixel_values"], theirs["pixel_values"])
    np.testing.assert_array_equal(ours["input_features"], theirs["input_features"])


@pytest.mark.parametrize(
    "message, error",
    [
        ({"role": "user", "content": [{"type": "file", "file": {"file_id": "x"}}]}, "block #0 has type 'file'"),
        ({"role": "user", "content": {"type": "text", "text": "hi"}}, "has a dict as content"),
        ({"content": "hi"}, "Message #0 has no 'role'"),
        ({"role": "user", "content": [{"type": "text"}]}, "text block without a 'text' string"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, "Remote"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "@@"}}]}, "not valid base64"),
    ],
)
def test_unknown_or_malformed_blocks_are_refused(processor, message, error):
    with pytest.raises(ValueError, match=error):
        processor.apply_chat_template([message], tokenize=True)


# ------------------------------------------------------------------------------------------------------ budgets


def test_generation_budget_refuses_before_generating():
    ids = torch.ones(1, 30000, dtype=torch.long)
    assert check_generation_budget(ids, 512, context=32768) == 2768
    with pytest.raises(
        ValueError, match=r"prompt has 30000 tokens and max_new_tokens=4096: 34096 .* context of 32768"
    ):
        check_generation_budget(ids, 4096, context=32768)
    with pytest.raises(ValueError, match="max_new_tokens must be a non-negative integer"):
        check_generation_budget(ids, -1, context=32768)


def test_generation_budget_reads_the_model_config(tiny_config_for_budget):
    with pytest.raises(ValueError, match="context of"):
        check_generation_budget(
            [[1] * 10], tiny_config_for_budget.get_text_config().max_position_embeddings, tiny_config_for_budget
        )


@pytest.fixture
def tiny_config_for_budget():
    from omni_hf.thinker.configuration_thinker import OmniThinkerConfig

    return OmniThinkerConfig()


def test_warnings_are_visible_not_only_logged(tmp_path):
    path = tmp_path / "six.wav"
    sf.write(path, np.zeros(8000 * 6, np.int16), 8000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(load_audio(path, max_seconds=5, truncate=True)) == 5 * 16000
    assert any("only its first 5 s are kept" in str(w.message) for w in caught)


def test_image_bytes_use_the_same_checks(media):
    blob = open(media["png"], "rb").read()
    assert load_image(blob).size == (224, 168)


# ------------------------------------------------------------------------------------------------------ training rows


def test_sft_keeps_silent_videos_unless_their_audio_is_used(media, tmp_path):
    from omni_hf.training.thinker_data import BadRow, row_to_messages

    row = {"video": media["video_silent"], "text": "a moving box"}
    messages = row_to_messages(row, tmp_path, 0)  # use_audio_in_video false: the silent video is fine
    clip = messages[0]["content"][0]["video"]
    assert clip.audio is None and clip.num_frames >= 4
    with pytest.raises(BadRow, match="no audio track"):
        row_to_messages(row, tmp_path, 0, video_audio=True)
    with_sound = row_to_messages({"video": media["video"], "text": "x"}, tmp_path, 1, video_audio=True)
    assert with_sound[0]["content"][0]["video"].audio is not None
