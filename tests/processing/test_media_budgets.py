"""Issue 28: budgets from headers before decoding (sample rate, pixels, audio / video seconds, text characters) on
the processor (CLI, Space), HTTP and realtime paths, and clear errors for bad media. Every bomb is built here, small
on disk; "nothing was decoded" is checked by making the decoder fail, never by timing."""

import base64
import io
import os
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omni_hf.processing import load_audio, load_image
from omni_hf.processing.audio import read_audio
from omni_hf.processing.content_parts import decode_audio_data, decode_image_data
from omni_hf.processing.encoding import (
    MediaError,
    StreamingResampler,
    float_to_pcm16,
    parse_data_url,
    pcm16_to_float,
    wav_bytes,
)
from omni_hf.processing.media import as_video_clip
from omni_hf.serving.protocol import (
    ChatCompletionRequest,
    ConversationBuilder,
    RequestError,
    ServerLimits,
    check_request,
    request_error,
)
from omni_hf.serving.realtime_events import EventError, parse_user_item
from omni_hf.testing.media import make_image, write_video


def _never(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was called: the input was decoded before its budget was checked")

    return fail


def _wav_at(rate: int, samples: int = 16000) -> bytes:
    """A 16-bit mono WAV whose header declares `rate` Hz (32 KB of silence)."""
    data = bytes(2 * samples)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _png_bomb(side: int = 12000) -> bytes:
    """A real `side` x `side` 1-bit black PNG (about 20 KB on disk, 432 MB as RGB)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = bytes(1 + -(-side // 8))
    pixels = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _png(width=64, height=48) -> bytes:
    buffer = io.BytesIO()
    make_image(width, height).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _chat(content) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": content}]}


def _build(content, **limits):
    """An HTTP request's content through the server's validation and `ConversationBuilder`."""
    request = ChatCompletionRequest.model_validate(_chat(content))
    builder = ConversationBuilder(ServerLimits(**limits))
    try:
        check_request(request, [], [], builder.limits)
        return builder(request.messages)
    finally:
        builder.close()


# -------------------------------------------------------------------------------------------- sample-rate range


def test_absurd_sample_rate_refused_from_the_header(tmp_path, monkeypatch):
    wav = _wav_at(50_000_001)
    path = tmp_path / "fast.wav"
    path.write_bytes(wav)
    monkeypatch.setattr("omni_hf.processing.audio.resample_poly", _never("resample_poly"))
    monkeypatch.setattr("omni_hf.processing.encoding.firwin", _never("firwin"))
    for source in (str(path), wav):  # the CLI / Space (paths) and uploads (bytes)
        with pytest.raises(ValueError, match=r"50000001 Hz: sampling rates from 1000 to 384000 Hz are accepted"):
            load_audio(source)
    with pytest.raises(MediaError, match=r"50000001 Hz") as error:
        decode_audio_data(wav, "wav", "messages[0].content[0].input_audio")  # HTTP
    assert error.value.status == 400
    with pytest.raises(ValueError, match="50000001 Hz"):
        load_audio((np.zeros(100, np.float32), 50_000_001))  # an (array, rate) pair
    with pytest.raises(ValueError, match="50000001 Hz"):
        StreamingResampler(50_000_001, 16000)


# -------------------------------------------------------------------------------------------- audio seconds


def test_hour_of_silent_flac_refused_from_the_header(monkeypatch):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(3600 * 1000, dtype=np.int16), 1000, format="FLAC")
    flac = buffer.getvalue()
    assert len(flac) < 200_000  # one hour, small on disk
    monkeypatch.setattr(sf.SoundFile, "read", _never("SoundFile.read"))
    with pytest.raises(MediaError, match=r"audio of 3600\.0 s is longer than the limit 300 s") as error:
        decode_audio_data(flac, "flac", "messages[0].content[0].input_audio", max_seconds=300)
    assert error.value.status == 413
    with pytest.raises(ValueError, match=r"lasts 3600\.0 s, more than the 300 s"):
        read_audio(flac, max_seconds=300)  # the processor's bytes path


# -------------------------------------------------------------------------------------------- pixels


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_png_bomb_refused_from_its_header_on_every_path(monkeypatch):
    bomb = _png_bomb()
    assert len(bomb) < 200_000
    monkeypatch.setattr(Image.Image, "load", _never("Image.load"))
    with pytest.raises(MediaError, match=r"12000x12000 = 144\.0 MP, more than the 67\.1 MP") as error:
        decode_image_data(bomb, "messages[0].content[0].image_url")
    assert error.value.status == 413
    with pytest.raises(RequestError, match=r"144\.0 MP") as error:  # HTTP, as a data URL
        _build([{"type": "image_url", "image_url": {"url": _data_url("image/png", bomb)}}])
    assert error.value.status == 413 and error.value.param == "messages[0].content[0]"
    item = {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user",
                     "content": [{"type": "input_image", "image_url": _data_url("image/png", bomb)}]}}  # fmt: skip
    with pytest.raises(EventError, match=r"144\.0 MP") as error:  # realtime
        parse_user_item(item)
    assert error.value.code == "invalid_image" and error.value.param == "item.content[0].image_url"
    with pytest.raises(ValueError, match=r"144\.0 MP"):  # the processor (CLI, Space)
        load_image(bomb)


# -------------------------------------------------------------------------------------------- video seconds


def test_long_video_refused_from_its_container_header(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.mp4", duration=600, fps=1, width=32, height=32, with_audio=False)
    assert os.path.getsize(path) < 500_000
    import av

    monkeypatch.setattr(av.container.InputContainer, "decode", _never("decode"))
    video = {"type": "video_url", "video_url": {"url": _data_url("video/mp4", open(path, "rb").read())}}
    with pytest.raises(RequestError, match=r"video of 600\.0 s is longer than the limit 300 s") as error:
        _build([video])
    assert error.value.status == 413 and error.value.param == "messages[0].content[0]"
    assert _build([video], max_video_seconds=900)[0]["content"][0]["type"] == "video"


def test_video_tokens_over_the_context_refused_before_decoding(tmp_path, processor, monkeypatch):
    """The processor (CLI, Space) refuses, from the header, a video that alone cannot fit the tokenizer's context."""
    path = write_video(tmp_path / "wide.mp4", duration=4, fps=2, width=224, height=224, with_audio=False)
    import av

    monkeypatch.setattr(av.container.InputContainer, "decode", _never("decode"))
    monkeypatch.setattr(processor.tokenizer, "model_max_length", 100)
    with pytest.raises(ValueError, match=r"would take \d+ tokens .* more than the 100 allowed"):
        processor(text="<|VIDEO|>", videos=[path])


# -------------------------------------------------------------------------------------------- text characters


def test_huge_text_refused_before_tokenizing(processor, monkeypatch):
    text = "ab " * (20 * 2**20 // 3)  # 20 MB
    monkeypatch.setattr("omni_hf.processing.processing_omni.tokenize_with_literals", _never("tokenize"))
    with pytest.raises(ValueError, match=r"The prompt has \d+ characters, more than the 1048576 accepted"):
        processor.apply_chat_template([{"role": "user", "content": text}], tokenize=True)
    with pytest.raises(RequestError, match=r"\d+ characters of text, more than this server's limit") as error:
        _build([{"type": "text", "text": text}])  # HTTP (a text part; a string content the same)
    assert error.value.status == 413
    with pytest.raises(RequestError, match="characters of text"):
        request = ChatCompletionRequest.model_validate(_chat(text))
        check_request(request, [], [], ServerLimits())
    item = {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}  # fmt: skip
    with pytest.raises(EventError, match=r"text of \d+ characters is over the 1048576 accepted"):  # realtime
        parse_user_item(item)


# -------------------------------------------------------------------------------------------- unclear errors


@pytest.mark.parametrize("suffix", [".mp3", ".flac"])
def test_random_bytes_named_as_audio(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"noise\.(mp3|flac)'.*corrupt or not a valid audio file") as error:
        load_audio(str(path))
    assert "layout" not in str(error.value)


def test_bool_image_array_and_mixed_video_frames():
    with pytest.raises(ValueError, match=r"dtype bool: expected uint8"):
        load_image(np.zeros((64, 64, 3), dtype=bool))
    frames = [np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), np.zeros((48, 64, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"different sizes: frame 0 is \(64, 64, 3\) but frame 2 is \(48, 64, 3\)"):
        as_video_clip(frames)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "fifo"])
def test_devices_and_fifos_in_training_data(tmp_path, special):
    from omni_hf.training.pair_audio import read_audio as read_pair_audio
    from omni_hf.training.thinker_data import BadRow, row_to_messages

    if special == "fifo":
        special = str(tmp_path / "pipe.wav")
        os.mkfifo(special)
    elif not os.path.exists(special):
        pytest.skip(f"{special} does not exist here")
    with pytest.raises(BadRow, match=r"not a regular file \(a device, FIFO or socket\)") as error:
        row_to_messages({"audio": special, "text": "hi"}, tmp_path, 0)
    assert "not found" not in str(error.value)
    with pytest.raises(ValueError, match="not a regular file"):
        read_pair_audio(special)


def test_data_url_declared_type_is_checked_against_its_content():
    jpeg = io.BytesIO()
    make_image(64, 48).save(jpeg, format="JPEG")
    assert parse_data_url(_data_url("image/png", _png()), "image", "x")[:4] == b"\x89PNG"
    assert parse_data_url(_data_url("image/jpg", jpeg.getvalue()), "image", "x")[:3] == b"\xff\xd8\xff"
    with pytest.raises(MediaError, match=r"declares 'image/png' but the data is jpeg"):
        parse_data_url(_data_url("image/png", jpeg.getvalue()), "image", "x")
    wav = wav_bytes(np.zeros(2400, np.float32))
    with pytest.raises(RequestError, match=r"declares image/png but holds audio data \(wav\)"):
        _build([{"type": "image_url", "image_url": {"url": _data_url("image/png", wav)}}])
    with pytest.raises(RequestError, match=r"declares 'audio/wav', but image data is expected"):
        _build([{"type": "image_url", "image_url": {"url": _data_url("audio/wav", _png())}}])


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "HTTP://example.com/a.png", "Https://x/y.png"])
def test_remote_schemes_are_named_in_any_case(url):
    with pytest.raises(RequestError, match=r"(ftp|http|https):// URLs are not fetched by this server") as error:
        _build([{"type": "image_url", "image_url": {"url": url}}])
    assert "local" not in str(error.value)


@pytest.mark.parametrize(
    "content, message, param",
    [
        ([{"type": "text", "text": 5}], r"messages\[0\]\.content\[0\] is a text block without a 'text' string \(got int",
         "messages[0].content[0]"),
        (5, r"messages\[0\]\.content must be a string or a list of content parts .*got int", "messages[0].content"),
        ([{"type": "image_url", "image_url": "data:image/png;base64,AAAA"}],
         r"image_url must be an object \{'url'", "messages[0].content[0].image_url"),
        ([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "aiff"}}],
         r"format must be one of wav, mp3, flac, ogg, pcm16, got 'aiff'", "messages[0].content[0].input_audio.format"),
        ([{"type": "file", "file": {}}], r"has type 'file', which is not supported: use text, image_url",
         "messages[0].content[0]"),
        ([{"type": "text", "text": "hi", "extra": 1}], "unknown field 'extra'", "messages[0].content[0].extra"),
    ],
)  # fmt: skip
def test_http_content_part_errors_read_clearly(content, message, param):
    import pydantic

    with pytest.raises(pydantic.ValidationError) as caught:
        ChatCompletionRequest.model_validate(_chat(content))
    error = request_error(caught.value)
    assert "Input should be a valid string" not in str(error) and error.param == param
    assert pytest.importorskip("re").search(message, str(error)), str(error)


def test_nan_temperature_reads_clearly():
    import pydantic

    with pytest.raises(pydantic.ValidationError) as caught:
        ChatCompletionRequest.model_validate(_chat("hi") | {"temperature": float("nan")})
    assert "finite number" in str(request_error(caught.value))


# -------------------------------------------------------------------------------------------- one pcm16 convention


def test_pcm16_round_trips_bit_exactly():
    """Full scale 32768: decoding then encoding gives the same bytes back; encoding rounds and clips."""
    raw = np.arange(-32768, 32768, 7, dtype="<i2").tobytes()
    assert float_to_pcm16(pcm16_to_float(raw)) == raw
    assert np.frombuffer(float_to_pcm16(np.array([1.0, -1.0, 0.5, 2.0, 1e-5])), "<i2").tolist() == [
        32767, -32768, 16384, 32767, 0]  # fmt: skip
    assert sf.read(io.BytesIO(wav_bytes(pcm16_to_float(raw))), dtype="int16")[0].tobytes() == raw


@pytest.mark.parametrize(
    "session, param",
    [({"audio": "x"}, "session.audio"), ({"audio": {"output": 5}}, "session.audio.output"),
     ({"audio": {"input": {"format": "pcm16"}}}, "session.audio.input.format"), ({"voice": ["x"]}, "session.voice")],
)  # fmt: skip
def test_realtime_session_fields_of_the_wrong_type_are_named(session, param):
    from omni_hf.serving.realtime_events import SessionSettings, update_settings

    with pytest.raises(EventError) as error:
        update_settings(SessionSettings(), session, {"Chelsie"})
    assert error.value.param == param and error.value.code == "invalid_event"


def test_cli_checks_media_headers_before_loading_weights(tiny_omni_dir, tmp_path, capsys, monkeypatch):
    import omni_hf
    from omni_hf import cli

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the media were checked")

    monkeypatch.setattr(omni_hf.OmniForConditionalGeneration, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(omni_hf.OmniThinkerForConditionalGeneration, "from_pretrained", classmethod(refuse))
    fast, bomb = tmp_path / "fast.wav", tmp_path / "bomb.png"
    fast.write_bytes(_wav_at(50_000_001))
    bomb.write_bytes(_png_bomb())
    chat = ["chat", "--model", str(tiny_omni_dir), "--max-new-tokens", "3"]
    assert cli.main([*chat, "--audio", str(fast)]) == 2
    assert f"--audio {fast}: " in (err := capsys.readouterr().err) and "50000001 Hz" in err
    assert cli.main([*chat, "--image", str(bomb), "--text", "look"]) == 2
    assert f"--image {bomb}: " in (err := capsys.readouterr().err) and "12000x12000 = 144.0 MP" in err
