"""The Space through its API (gradio_client) and its input checks."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

APP = Path(__file__).parents[2] / "spaces" / "omni_chat" / "app.py"


def test_reply_over_the_api(space_url, space_media):
    from gradio_client import Client, handle_file

    client = Client(space_url, verbose=False)
    message = {"text": "What do you see?", "files": [handle_file(str(space_media["image"]))]}
    _, chat, _, audio_path, latency = client.submit(message, [], "Chelsie", "base voice", api_name="/respond").result(
        timeout=120
    )
    assert chat[0]["role"] == "user" and chat[0]["content"][0]["type"] == "file"
    assert chat[-1]["role"] == "assistant"
    audio, rate = soundfile.read(audio_path)
    assert rate == 24000 and audio.size > 0 and np.isfinite(audio).all()
    assert "First audio:" in latency and "RTF" in latency


def test_unsupported_upload_is_refused_over_the_api(space_url, space_media):
    from gradio_client import Client, handle_file

    bad = space_media["dir"] / "scan.tiff"  # an image by MIME type (gradio lets it through), not one the model reads
    bad.write_bytes(b"II*\0not really a tiff")
    client = Client(space_url, verbose=False)
    with pytest.raises(Exception, match=r"scan\.tiff: unsupported file type \.tiff; expected one of"):
        client.predict(
            {"text": "hi", "files": [handle_file(str(bad))]}, [], "Chelsie", "base voice", api_name="/respond"
        )


@pytest.fixture
def spaces_app(monkeypatch):
    """app.py imported as on a Space (SPACE_ID set), without loading a model."""
    monkeypatch.setenv("SPACE_ID", "omni-hf/omni-chat")
    spec = importlib.util.spec_from_file_location("omni_chat_app_on_spaces", APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("omni_chat_app_on_spaces", None)


def test_space_limits(spaces_app, tmp_path):
    import gradio as gr

    assert spaces_app.ON_SPACES and spaces_app.LIMITS.concurrency == 1
    long_audio = tmp_path / "long.wav"
    soundfile.write(long_audio, np.zeros(16000 * 45, dtype=np.float32), 16000)
    with pytest.raises(gr.Error, match=r"long\.wav lasts 45 s; audio up to 30 s"):
        spaces_app.user_content({"text": "", "files": [str(long_audio)]})
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (21 * 2**20))
    with pytest.raises(gr.Error, match=r"big\.png is 21\.0 MB; files up to 20 MB"):
        spaces_app.user_content({"text": "look", "files": [str(big)]})
    with pytest.raises(gr.Error, match="at most 2000"):
        spaces_app.user_content({"text": "x" * 2001, "files": []})
    with pytest.raises(gr.Error, match="Type a message"):
        spaces_app.user_content({"text": " ", "files": []})
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(16000, dtype=np.float32), 16000)
    assert spaces_app.user_content({"text": "hi", "files": [str(short)]}) == [
        {"type": "audio", "audio": str(short)},
        {"type": "text", "text": "hi"},
    ]
