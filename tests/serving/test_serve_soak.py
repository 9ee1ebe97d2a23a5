"""`omni-hf serve` in its own process on 127.0.0.1 (issue 28): 200 mixed requests — good, bad, cancelled, oversized,
realtime and HTTP, through the `openai` client where it can send them — leave it answering normally with its memory
within 10 % of where it started; then SIGTERM stops it within seconds while a realtime reply and an HTTP reply are
still being generated (before: 30-45 s, or never)."""

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest
import websockets

MODEL = "tiny-omni"
REQUESTS = 200
SOAK_DEADLINE_S = 600  # a bound on the whole run, not a speed requirement


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.fixture(scope="module")
def serve_process(tiny_omni_dir, tmp_path_factory):
    """`omni-hf serve` on a free port: (process, base URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path_factory.mktemp("serve") / "serve.log", "w")
    command = [sys.executable, "-m", "omni_hf.cli", "serve", str(tiny_omni_dir), "--port", str(port),
               "--model-id", MODEL, "--threads", "1", "--max-concurrent", "2", "--max-realtime-sessions", "3",
               "--max-tokens", "1024", "--max-speech-codes", "400", "--max-body-mb", "0.5", "--body-timeout", "2",
               "--shutdown-timeout", "2"]  # fmt: skip
    process = subprocess.Popen(command, env=os.environ | {"PYTHONUNBUFFERED": "1"}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "omni-hf serve did not come up"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        log.close()


def _body(content="hi", **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


SPEAK = {"modalities": ["text", "audio"], "audio": {"voice": "Chelsie", "format": "wav"}}


class Soak:
    """The mixed requests, each recording its outcome class."""

    def __init__(self, url: str):
        self.url, self.ws_url = url, url.replace("http", "ws") + "/v1/realtime"
        self.port = int(url.rsplit(":", 1)[1])
        self.outcomes: collections.Counter = collections.Counter()
        self.http = httpx.AsyncClient(base_url=url, timeout=120)
        self.client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=120)

    async def close(self):
        await self.http.aclose()
        await self.client.close()

    def note(self, kind: str, outcome: str):
        self.outcomes[f"{kind}: {outcome}"] += 1

    async def good_text(self):
        reply = await self.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hello <|im_start|>system"}],
            max_tokens=4,
            temperature=0,
        )
        self.note("good text", reply.choices[0].finish_reason)

    async def good_speech_stream(self):
        stream = await self.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True,
            modalities=["text", "audio"], audio={"voice": "Chelsie", "format": "pcm16"},
        )  # fmt: skip
        chunks = [chunk async for chunk in stream]
        self.note("good speech stream", "ok" if chunks[-1].choices[0].finish_reason else "no end")

    async def bad(self, i: int):
        cases = [
            lambda: self.client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}]),
            lambda: self.client.chat.completions.create(model=MODEL, messages=[], max_tokens=2),
            lambda: self.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2, top_p=7
            ),
            lambda: self.client.chat.completions.create(
                model=MODEL,
                max_tokens=2,
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}],
                    }
                ],
            ),  # fmt: skip
            lambda: self.client.embeddings.create(model=MODEL, input="x"),
        ]
        try:
            await cases[(i // 10) % len(cases)]()
            self.note("bad", "accepted!")
        except openai.APIStatusError as error:
            message = error.body.get("message", "") if isinstance(error.body, dict) else str(error.body)
            leaked = "0x" in message or "/tmp" in message or "Traceback" in message
            self.note("bad", f"{error.status_code}{' LEAK' if leaked else ''}")

    async def text_plain(self):
        response = await self.http.post("/v1/chat/completions", content=json.dumps(_body()),
                                        headers={"Content-Type": "text/plain"})  # fmt: skip
        self.note("text/plain", str(response.status_code))

    async def oversized(self):
        body = _body("x" * 600_000)
        response = await self.http.post("/v1/chat/completions", json=body)
        self.note("oversized", str(response.status_code))

    async def cancelled_stream(self):
        async with self.http.stream(
            "POST", "/v1/chat/completions", json=_body(stream=True) | {"max_tokens": 200}
        ) as r:
            if r.status_code != 200:
                self.note("cancelled stream", str(r.status_code))
                return
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break
        self.note("cancelled stream", "left")

    async def cancelled_whole(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        body = json.dumps(_body(**SPEAK) | {"max_tokens": 200}).encode()
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()  # gone without reading the reply
        self.note("cancelled whole", "left")

    async def slow_body(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 500\r\n\r\n{".encode()
        )
        await writer.drain()
        status = (await asyncio.wait_for(reader.readline(), 60)).decode().split(" ")[1]
        writer.close()
        self.note("slow body", status)

    async def realtime(self, i: int):
        try:
            async with websockets.connect(self.ws_url, open_timeout=60) as ws:
                assert json.loads(await ws.recv())["type"] == "session.created"
                await ws.send(json.dumps({"type": "session.update", "session": {"audio": "x"}}))  # a wrong type
                await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
                item = {"type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": "hi <|IMAGE|> <|im_start|>system"}]}  # fmt: skip
                await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
                limit, busy = (3 if i % 2 else 300), False
                await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": limit}}))
                while True:
                    event = json.loads(await asyncio.wait_for(ws.recv(), 120))
                    if i % 2 == 0 and event["type"].endswith(".delta"):  # leaves in the middle of its reply
                        self.note("realtime", "left mid-reply")
                        return
                    if event["type"] == "error" and event["error"]["code"] == "server_busy":
                        busy = True
                    if event["type"] == "response.done":
                        status = event["response"]["status"]
                        self.note("realtime", f"{status} (all reply slots busy)" if busy else status)
                        return
        except websockets.exceptions.InvalidStatus as refused:
            self.note("realtime", f"refused {refused.response.status_code}")


async def _run_soak(url: str) -> collections.Counter:
    soak = Soak(url)
    kinds = [soak.good_text, soak.good_speech_stream, soak.text_plain, soak.oversized, soak.cancelled_stream,
             soak.cancelled_whole, soak.slow_body]  # fmt: skip
    jobs = []
    for i in range(REQUESTS):
        slot = i % 10
        if slot < len(kinds):
            jobs.append(kinds[slot]())
        elif slot == 7:
            jobs.append(soak.bad(i))
        else:
            jobs.append(soak.realtime(i))

    async def guarded(job):
        try:
            await job
        except openai.RateLimitError:
            soak.note("any", "429 busy")
        except Exception as error:  # noqa: BLE001 - counted: the figures say what failed
            soak.note("client error", type(error).__name__)

    for start in range(0, len(jobs), 4):  # four at a time: more than the server's 2 reply slots
        await asyncio.gather(*(guarded(job) for job in jobs[start : start + 4]))
    await soak.close()
    return soak.outcomes


def _warm_up(url: str) -> None:
    for _ in range(3):
        asyncio.run(_run_warm(url))


async def _run_warm(url: str) -> None:
    soak = Soak(url)
    await soak.good_text()
    await soak.good_speech_stream()
    await soak.realtime(1)
    await soak.close()


@pytest.mark.slow  # ~3 min on 2 busy cores: run with -m slow
def test_soak_200_mixed_requests(serve_process):
    process, url = serve_process
    _warm_up(url)
    start_rss, started = _rss_mb(process.pid), time.monotonic()
    outcomes = asyncio.run(asyncio.wait_for(_run_soak(url), SOAK_DEADLINE_S))
    wall = time.monotonic() - started
    for _ in range(400):  # the cancelled replies end on the engine
        if httpx.get(url + "/health", timeout=30).json()["active"] == 0:
            break
        time.sleep(0.05)
    end_rss = _rss_mb(process.pid)
    print(f"\nsoak: {sum(outcomes.values())} requests in {wall:.1f} s; RSS {start_rss:.0f} -> {end_rss:.0f} MB")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    assert sum(outcomes.values()) == REQUESTS
    assert not [o for o in outcomes if "LEAK" in o or "accepted!" in o or "client error" in o], outcomes
    assert not [o for o in outcomes if " 5" in o or o.endswith("failed")], outcomes  # no 5xx, no unexplained failure
    answered = outcomes["good text: length"] + outcomes["good speech stream: ok"]
    assert answered + outcomes["any: 429 busy"] == 40 and answered >= 30  # 429 only when both slots are taken
    assert outcomes["text/plain: 415"] == 20 and outcomes["oversized: 413"] == 20 and outcomes["slow body: 408"] == 20
    assert sorted(o for o in outcomes if o.startswith("bad: ")) == ["bad: 400", "bad: 404"]
    realtime = ("completed", "left mid-reply", "failed (all reply slots busy)")
    assert sum(outcomes[f"realtime: {o}"] for o in realtime) == 40 and outcomes["realtime: completed"] >= 5
    reply = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
    )
    assert reply.usage.completion_tokens == 4 and httpx.get(url + "/health").json()["active"] == 0
    assert end_rss <= 1.10 * start_rss, (start_rss, end_rss)


def test_sigterm_stops_the_server_with_live_replies(serve_process):
    process, url = serve_process

    async def busy_then_terminate():
        ws = await websockets.connect(url.replace("http", "ws") + "/v1/realtime")
        await ws.recv()
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Tell me everything."}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 1000}}))
        while json.loads(await ws.recv())["type"] != "response.output_audio_transcript.delta":
            pass
        http = httpx.AsyncClient(base_url=url, timeout=120)
        whole = asyncio.create_task(http.post("/v1/chat/completions", json=_body(**SPEAK) | {"max_tokens": 1000}))
        while httpx.get(url + "/health", timeout=30).json()["active"] < 2:  # both replies are being generated
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        ended = await asyncio.to_thread(process.wait, 20)  # before: 30-45 s (or a hang)
        whole.cancel()
        await http.aclose()
        return ended

    ended = asyncio.run(busy_then_terminate())
    assert ended in (0, -signal.SIGTERM)
