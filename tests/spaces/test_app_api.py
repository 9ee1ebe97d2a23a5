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


def test_space_refuses_media_bombs_from_their_headers(spaces_app, tmp_path):
    """A WAV declaring 50 MHz and a 12000 x 12000 PNG (both tiny on disk) are refused before any decoding."""
    import struct
    import zlib

    import gradio as gr

    fmt = struct.pack("<HHIIHH", 1, 1, 50_000_001, 100_000_002, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 3200) + bytes(3200)
    fast = tmp_path / "fast.wav"
    fast.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(gr.Error, match=r"fast\.wav could not be read as audio: .*50000001 Hz: sampling rates from"):
        spaces_app.user_content({"text": "", "files": [str(fast)]})

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 12000
    pixels = zlib.compress(bytes(1 + side // 8) * side, 9)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))  # fmt: skip
    assert bomb.stat().st_size < 200_000
    with pytest.raises(gr.Error, match=r"bomb\.png could not be used as an image: .*12000x12000 = 144\.0 MP"):
        spaces_app.user_content({"text": "look", "files": [str(bomb)]})


async def _live_turn(ws_url: str, text: str) -> tuple[str, bytes]:
    """One typed question to the live tab's `/v1/realtime`: (transcript, pcm16 audio bytes)."""
    import asyncio
    import base64
    import json

    import websockets

    async with websockets.connect(ws_url) as ws:

        async def recv():
            return json.loads(await asyncio.wait_for(ws.recv(), 300))

        while (await recv())["type"] != "session.created":
            pass
        await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
        content = [{"type": "input_text", "text": text}]
        await ws.send(json.dumps({"type": "conversation.item.create",
                                  "item": {"type": "message", "role": "user", "content": content}}))  # fmt: skip
        await ws.send(json.dumps({"type": "response.create"}))
        transcript, audio = [], []
        while (event := await recv())["type"] != "response.done":
            assert event["type"] != "error", event
            if event["type"] == "response.output_audio.delta":
                audio.append(base64.b64decode(event["delta"]))
            elif event["type"] == "response.output_audio_transcript.delta":
                transcript.append(event["delta"])
        assert event["response"]["status"] == "completed", event
        return "".join(transcript), b"".join(audio)


def test_chat_tab_and_live_tab_at_once(space_url):
    """Both tabs run on the Space's one engine: a chat turn and a live turn at once both complete, and the live turn
    (seeded) equals the same turn alone. (They used to fail with 'All 36 evaluations of the schedule were consumed'.)"""
    import asyncio
    import threading

    from gradio_client import Client

    ws_url = space_url.replace("http://", "ws://") + "v1/realtime"
    alone = asyncio.run(_live_turn(ws_url, "Hello there."))
    assert alone[1]

    def chat(result: dict):
        client = Client(space_url, verbose=False)
        message = {"text": "Tell me a story.", "files": []}
        result["value"] = client.submit(message, [], "Chelsie", "base voice", api_name="/respond").result(timeout=300)

    for _ in range(2):
        chat_result: dict = {}
        thread = threading.Thread(target=chat, args=(chat_result,))
        thread.start()
        live = asyncio.run(_live_turn(ws_url, "Hello there."))
        thread.join(timeout=300)
        assert live == alone
        _, chat_log, _, audio_path, _ = chat_result["value"]
        assert chat_log[-1]["role"] == "assistant"
        audio, rate = soundfile.read(audio_path)
        assert rate == 24000 and audio.size > 0
