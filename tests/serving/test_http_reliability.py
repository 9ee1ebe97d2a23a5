"""`/v1/chat/completions` under hostile or careless use (issue 28): OpenAI error objects on unknown routes, a clear
message for NaN, `finish_reason: "length"` when the server's default limit cut the reply, unknown model names
refused, no addresses or paths in errors, abandoned non-streamed replies cancelled at once, slow bodies timed out."""

import json
import socket
import time

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from omni_hf.serving import ServerLimits, create_app

SPEAK = {"modalities": ["text", "audio"], "audio": {"voice": "Chelsie", "format": "wav"}}


def _body(content="hi", **extra) -> dict:
    return {"model": "tiny-omni", "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=120)


def test_wrong_routes_answer_openai_error_objects(server):
    for method, path, status in (("GET", "/v1/nothing", 404), ("POST", "/v1/models", 405), ("GET", "/", 404)):
        response = httpx.request(method, server.url + path, timeout=30)
        assert response.status_code == status
        body = response.json()
        assert "detail" not in body and body["error"]["type"] == "invalid_request_error", body
        assert path in body["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        _client(server.url).embeddings.create(model="tiny-omni", input="hi")


def test_nan_and_infinite_temperature_get_a_clear_message(server):
    for value in ("NaN", "Infinity", "-Infinity"):
        raw = json.dumps(_body()).replace('"max_tokens": 4', f'"max_tokens": 4, "temperature": {value}')
        response = httpx.post(
            server.url + "/v1/chat/completions",
            content=raw,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "temperature" and "finite number" in error["message"], error  # before: "<= 2"


def test_unknown_model_is_refused_like_openai(server):
    with pytest.raises(openai.NotFoundError) as refused:
        _client(server.url).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    error = refused.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model" and "tiny-omni" in error["message"]
    assert _client(server.url).models.list().data[0].id == "tiny-omni"  # the one name that is answered


def test_finish_reason_is_length_when_the_servers_default_limit_cut_the_reply(tiny_served, live_server):
    model, processor = tiny_served
    limits = ServerLimits(max_tokens=3, talker_max_new_tokens=30)
    with live_server(create_app(model, processor, model_id="tiny-omni", limits=limits)) as live:
        client = _client(live.url)
        messages = [{"role": "user", "content": "Tell me a long story."}]
        whole = client.chat.completions.create(model="tiny-omni", messages=messages, temperature=0)
        assert whole.usage.completion_tokens == 3 and whole.choices[0].finish_reason == "length"  # before: "stop"
        chunks = list(client.chat.completions.create(model="tiny-omni", messages=messages, temperature=0, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        own = client.chat.completions.create(model="tiny-omni", messages=messages, temperature=0, max_tokens=2)
        assert own.usage.completion_tokens == 2 and own.choices[0].finish_reason == "length"


def test_errors_carry_no_addresses_paths_or_internal_text(tiny_served, monkeypatch):
    model, processor = tiny_served
    secret = f"decoder {object()!r} failed on /tmp/omni_upload_x1y2/clip.wav (C:\\Users\\me\\a.wav)"

    def broken(*args, **kwargs):
        raise RuntimeError(secret)

    app = create_app(model, processor, model_id="tiny-omni")
    monkeypatch.setattr(app.state.omni.processor, "apply_chat_template", broken)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.post("/v1/chat/completions", json=_body())
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and "could not be processed" in message
    assert "0x" not in message and "/tmp" not in message and "omni_upload" not in message and "Users" not in message
    from omni_hf.serving.app import public_text

    assert public_text("bad <Foo object at 0x7f00deadbeef> in /home/me/x/y.wav") == "bad <object> in <path>"
    assert public_text("Content-Type must be application/json, audio/pcm at 24000 Hz") == (
        "Content-Type must be application/json, audio/pcm at 24000 Hz"
    )
    assert public_text("http://example.com/a.png is remote") == "http://example.com/a.png is remote"


def _health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=30).json()


def test_abandoned_whole_reply_is_cancelled_at_once(tiny_served, live_server):
    """`--max-concurrent 1`: a client that leaves during a non-streamed reply frees the only slot within a tick or
    two (before: the reply ran to its end, up to its 64 tokens and speech, and the next request got 429)."""
    model, processor = tiny_served
    model.thinker.generation_config  # noqa: B018 - the tiny model answers greedily up to max_tokens
    limits = ServerLimits(max_tokens=64, talker_max_new_tokens=400)
    app = create_app(model, processor, model_id="tiny-omni", limits=limits, max_active=1)
    engine = app.state.omni.engine
    with live_server(app) as live:
        body = json.dumps(_body("Tell me everything.", temperature=0, **SPEAK) | {"max_tokens": 64}).encode()
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        full_ticks = None
        for abandon in (False, True):
            start = engine.ticks
            sock = socket.create_connection(("127.0.0.1", live.port), timeout=120)
            sock.sendall(head + body)
            if not abandon:
                answer = b""
                while b"chat.completion" not in answer or not answer.rstrip().endswith(b"}"):
                    answer += sock.recv(65536)
                sock.close()
                full_ticks = engine.ticks - start
                continue
            while engine.ticks - start < 3:  # the reply is running: it holds the only slot
                time.sleep(0.01)
            busy = httpx.post(live.url + "/v1/chat/completions", json=_body(), timeout=30)
            assert busy.status_code == 429
            dropped_at = engine.ticks
            sock.close()  # the client leaves without reading its reply
            while _health(live.url)["active"]:
                time.sleep(0.01)
            after_drop = engine.ticks - dropped_at
        assert full_ticks > 30  # the whole reply takes many ticks (64 tokens, then its speech)
        print(f"ticks: whole reply {full_ticks}, after the client left {after_drop}")
        assert after_drop <= 6, (after_drop, full_ticks)  # before: the rest of the reply (tens of ticks)
        reply = httpx.post(live.url + "/v1/chat/completions", json=_body(), timeout=60)
        assert reply.status_code == 200 and reply.json()["object"] == "chat.completion"


def test_a_body_that_never_finishes_gets_408(tiny_served, live_server):
    model, processor = tiny_served
    app = create_app(model, processor, model_id="tiny-omni", body_timeout=0.5)
    with live_server(app) as live:
        sock = socket.create_connection(("127.0.0.1", live.port), timeout=60)
        sock.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model"'.encode()
        )
        answer = sock.recv(65536).decode()
        sock.close()
        assert answer.startswith("HTTP/1.1 408"), answer  # before: waited for the body forever
        assert '"request_timeout"' in answer
        assert httpx.post(live.url + "/v1/chat/completions", json=_body(), timeout=60).status_code == 200
    with pytest.raises(ValueError, match="body_timeout"):
        create_app(model, processor, body_timeout=0)
