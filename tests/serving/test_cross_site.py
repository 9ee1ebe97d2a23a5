"""No cross-site use: a web page cannot drive the server (foreign `Origin`, DNS-rebound `Host`, text/plain bodies), on
HTTP and on `/v1/realtime`; clients that are not browsers are not affected; replies never name a local path."""

import asyncio
import json

import httpx
import pytest
import websockets

from omni_hf.serving.cross_site import host_allowed, origin_allowed
from omni_hf.serving.server import served_name

BODY = {"model": "tiny-omni", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def test_foreign_origin_rebound_host_and_text_plain_are_refused(server):
    url = server.url + "/v1/chat/completions"
    evil = httpx.post(url, json=BODY, headers={"Origin": "http://evil.example"}, timeout=60)
    assert evil.status_code == 403 and "evil.example" in evil.json()["error"]["message"]
    rebound = httpx.get(server.url + "/v1/models", headers={"Host": "evil.example"}, timeout=60)
    assert rebound.status_code == 403 and "--allowed-hosts" in rebound.json()["error"]["message"]
    plain = httpx.post(url, content=json.dumps(BODY), headers={"Content-Type": "text/plain"}, timeout=60)
    assert plain.status_code == 415 and "application/json" in plain.json()["error"]["message"]
    own = httpx.get(server.url + "/v1/models", headers={"Origin": server.url}, timeout=60)  # the server's own page
    assert own.status_code == 200
    assert httpx.post(url, json=BODY, timeout=120).status_code == 200  # no Origin: not a browser


def test_foreign_origin_cannot_open_a_realtime_session(server):
    async def connect(origin):
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/realtime", origin=origin) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 60))["type"]

    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(connect("http://evil.example"))
    assert refused.value.response.status_code == 403
    assert asyncio.run(connect(None)) == "session.created"


def test_realtime_routes_on_another_app_check_the_origin(realtime_server):
    app, port = realtime_server  # a plain FastAPI app with only the realtime route (as the Space mounts it)

    async def connect(origin):
        headers = {"Authorization": "Bearer test-key"}
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        async with websockets.connect(url, origin=origin, additional_headers=headers) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 60))["type"]

    with pytest.raises(websockets.exceptions.InvalidStatus):
        asyncio.run(connect("http://evil.example"))
    assert asyncio.run(connect(f"http://127.0.0.1:{port}")) == "session.created"  # the page's own origin


def test_rules():
    assert origin_allowed(None, "127.0.0.1:8000")
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000")
    assert not origin_allowed("null", "127.0.0.1:8000")
    assert origin_allowed("https://app.example", "127.0.0.1:8000", ["https://app.example/"])
    assert host_allowed("127.0.0.1:8000", ["127.0.0.1"]) and host_allowed("[::1]:8000", ["::1"])
    assert not host_allowed("evil.example:8000", ["127.0.0.1", "localhost"]) and not host_allowed(None, ["x"])


def test_served_name_is_never_a_path(tmp_path):
    folder = tmp_path / "models" / "my-omni"
    folder.mkdir(parents=True)
    assert served_name(str(folder)) == "my-omni" and served_name(str(folder) + "/") == "my-omni"
    assert served_name("Qwen/Qwen2.5-Omni-7B") == "Qwen/Qwen2.5-Omni-7B"
