"""Bad requests get OpenAI-style 4xx errors and the server keeps serving; a client that disconnects frees its slot;
a full server answers 429 with Retry-After; the API key, per-request timeout and body limit hold."""

import base64
import io
import json
import time

import httpx
import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient

from omni_hf.serving import ServerLimits, create_app

SPEAK = {"modalities": ["text", "audio"], "audio": {"voice": "Chelsie", "format": "pcm16"}}


def _wav_b64(seconds: float, rate: int = 16000) -> str:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


def _audio_part(data: str) -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def _body(content, **extra) -> dict:
    return {"model": "tiny-omni", "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


BAD = {
    "unknown voice": (_body("hi", modalities=["text", "audio"], audio={"voice": "Nobody"}), 400, "audio.voice"),
    "malformed base64": (_body([_audio_part("not base64!!")]), 400, "messages[0].content[0]"),
    "oversize upload": (_body([_audio_part(_wav_b64(15.0))]), 413, "messages[0].content[0]"),
    "too many media": (_body([_audio_part(_wav_b64(0.1))] * 3), 400, "messages"),
    "unknown field": (_body("hi", frequency_penalty=0.5), 400, "frequency_penalty"),
    "unknown voice adapter": (_body("hi", voice_adapter="pirate"), 400, "voice_adapter"),
    "wav while streaming": (
        _body("hi", stream=True, **(SPEAK | {"audio": {"voice": "Chelsie", "format": "wav"}})),
        400,
        "audio.format",
    ),
    "no messages": (_body("hi") | {"messages": []}, 400, "messages"),
    "remote image": (_body([{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]), 400, None),
    "local path not allowed": (_body([{"type": "image_url", "image_url": {"url": "/etc/passwd"}}]), 400, None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, case):
    body, status, param = BAD[case]
    response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param
    ok = httpx.post(server.url + "/v1/chat/completions", json=_body("hi", temperature=0), timeout=60)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4


def test_input_audio_is_heard(server):
    """A valid audio upload goes through the processor into the Thinker (the prompt grows by its audio tokens)."""
    plain = httpx.post(server.url + "/v1/chat/completions", json=_body("hi"), timeout=60).json()
    heard = httpx.post(
        server.url + "/v1/chat/completions",
        json=_body([_audio_part(_wav_b64(1.0)), {"type": "text", "text": "hi"}]),
        timeout=60,
    ).json()
    assert heard["usage"]["prompt_tokens"] >= plain["usage"]["prompt_tokens"] + 20


def _health(server) -> dict:
    return httpx.get(server.url + "/health").json()


def _wait_idle(server, seconds: float = 20.0) -> float:
    start = time.monotonic()
    while _health(server)["active"]:
        assert time.monotonic() - start < seconds, "the slot was not freed"
        time.sleep(0.05)
    return time.monotonic() - start


def test_disconnect_cancels_and_frees_the_slot(server):
    engine = server.app.state.omni.engine
    _wait_idle(server)
    body = _body("Tell me everything.", stream=True, **SPEAK) | {"max_tokens": 64}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert _health(server)["active"] == 1
            ticks = engine.ticks
    waited = _wait_idle(server)  # the connection is closed: the reply must stop long before its 64 tokens
    assert waited < 5 and engine.ticks - ticks < 40


def test_full_server_answers_429_with_retry_after(server):
    _wait_idle(server)
    body = _body("Tell me everything.", stream=True, **SPEAK) | {"max_tokens": 64}
    with httpx.Client(timeout=60) as client:
        streams = [client.stream("POST", server.url + "/v1/chat/completions", json=body) for _ in range(3)]
        responses = [s.__enter__() for s in streams]
        try:
            assert [r.status_code for r in responses] == [200] * 3 and _health(server)["active"] == 3
            busy = httpx.post(server.url + "/v1/chat/completions", json=_body("hi"), timeout=60)
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["type"] == "rate_limit_error"
        finally:
            for s in streams:
                s.__exit__(None, None, None)
    _wait_idle(server)
    assert httpx.post(server.url + "/v1/chat/completions", json=_body("hi"), timeout=60).status_code == 200


def test_api_key_timeout_and_body_limit(tiny_served):
    model, processor = tiny_served
    limits = ServerLimits(
        **(dict(max_tokens=64, talker_max_new_tokens=120) | {"timeout": 0.3, "max_body_bytes": 50_000})
    )
    app = create_app(model, processor, model_id="tiny-omni", limits=limits, api_key="s3cret", max_active=2)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200  # open for load balancers
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            denied = client.post("/v1/chat/completions", json=_body("hi"), headers=headers)
            assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
        assert client.get("/v1/models").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/models", headers=auth).status_code == 200
        slow = client.post("/v1/chat/completions", json=_body("hi", **SPEAK) | {"max_tokens": 64}, headers=auth)
        assert slow.status_code == 504 and "timeout" in slow.json()["error"]["message"]
        big = client.post(
            "/v1/chat/completions",
            content=json.dumps(_body("x" * 60_000)),
            headers=auth | {"Content-Type": "application/json"},
        )
        assert big.status_code == 413
        assert client.post("/v1/chat/completions", json=_body("hi"), headers=auth).status_code == 200


def test_realtime_hook_gets_the_app_state(tiny_served, monkeypatch):
    """`create_app` calls `omni_hf.serving.realtime.add_realtime_routes` when that module exists."""
    import sys
    import types

    model, processor = tiny_served
    seen = {}

    def add_realtime_routes(app, model, processor, *, api_key=None, model_name="x"):
        seen.update(state=app.state.omni, model=model, api_key=api_key, model_name=model_name)

        @app.get("/v1/realtime-probe")
        async def probe():
            return {"ok": True}

    monkeypatch.setitem(
        sys.modules, "omni_hf.serving.realtime", types.SimpleNamespace(add_realtime_routes=add_realtime_routes)
    )
    with TestClient(create_app(model, processor, model_id="tiny", api_key="k")) as client:
        assert client.get("/v1/realtime-probe").json() == {"ok": True}
    assert seen["model"] is model and seen["api_key"] == "k" and seen["model_name"] == "tiny"
    assert seen["state"].limits.max_tokens == ServerLimits().max_tokens and seen["state"].authorized


def test_omni_hf_serve_command(tiny_omni_dir):
    """`omni-hf serve` in its own process: binds 127.0.0.1, answers curl, requires its API key."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "omni_hf.cli", "serve", str(tiny_omni_dir), "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--api-key", "k", "--threads", "1", "--model-id", "tiny-omni"],
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "omni-hf serve did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = json.dumps(_body("hi", temperature=0))
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        curl = ["curl", "-s", url, "-H", "Content-Type: application/json", "-d", body]
        denied = json.loads(subprocess.run(curl, capture_output=True, check=True).stdout)
        assert denied["error"]["type"] == "authentication_error"
        reply = json.loads(
            subprocess.run([*curl, "-H", "Authorization: Bearer k"], capture_output=True, check=True).stdout
        )
        assert reply["object"] == "chat.completion" and reply["usage"]["completion_tokens"] == 4
    finally:
        server.terminate()
        server.wait(timeout=30)
