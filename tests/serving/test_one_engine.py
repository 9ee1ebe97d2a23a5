"""One engine for HTTP, realtime and the Space: every model forward of the server runs on its `BatchScheduler`. An
HTTP stream, two realtime turns and a Space chat turn at once each equal the same request alone, and two realtime
sessions answer together (on this machine the second's first audio came within 2x the first's; 3.8x before replies
yielded between model steps)."""

import asyncio
import base64
import json
import time

import gradio as gr
import pytest
import websockets

from helpers.space import load_space_app

REALTIME = dict(thinker_max_new_tokens=6, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=60)
HTTP_QUESTION = ("Tell me a story.", "Ethan", 10)


@pytest.fixture(scope="module")
def one_engine_server(tiny_omni_dir, live_server, server_limits, tmp_path_factory):
    """`omni-hf serve`'s app on its own copy of the tiny model, plus a realtime route with short greedy replies."""
    from omni_hf import OmniForConditionalGeneration, OmniProcessor
    from omni_hf.serving import create_app
    from omni_hf.serving.realtime import add_realtime_routes

    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    processor = OmniProcessor.from_pretrained(tiny_omni_dir)
    app = create_app(model, processor, model_id="tiny-omni", limits=server_limits, max_active=6)
    engine = app.state.omni.engine
    add_realtime_routes(
        app, model, processor, generation_kwargs=REALTIME, seed=0, path="/v1/realtime-short", engine=engine
    )
    space = load_space_app("omni_chat_app_one_engine")
    space.SEED, space.MAX_NEW_TOKENS, space.MAX_SPEECH_CODES = 0, 4, 40  # seeded, short replies
    demo = space.build_demo(model, processor, [], tmp_path_factory.mktemp("space_replies"), engine=engine)
    app = gr.mount_gradio_app(app, demo, path="/space")
    with live_server(app) as live:
        yield live


def _space_turn(url: str, text: str) -> tuple[str, bytes]:
    """One chat-tab turn through the Space's own API (`gradio_client`): (reply text, WAV bytes)."""
    from gradio_client import Client

    client = Client(url + "/space/", verbose=False)
    _, chat, _, audio_path, _ = client.submit({"text": text, "files": []}, [], "Chelsie", "base voice",
                                              api_name="/respond").result(timeout=300)  # fmt: skip
    with open(audio_path, "rb") as audio:
        return chat[-1]["content"], audio.read()


async def _realtime_turn(url: str, text: str, voice: str, started: list | None = None):
    """One typed question over `/v1/realtime-short`: (transcript, pcm16 audio bytes, (when the first audio came,
    when the reply was done) on the `time.perf_counter` clock)."""
    async with websockets.connect(url + "/v1/realtime-short") as ws:

        async def recv():
            return json.loads(await asyncio.wait_for(ws.recv(), 300))

        while (await recv())["type"] != "session.created":
            pass
        await ws.send(json.dumps({"type": "session.update", "session": {"voice": voice, "turn_detection": None}}))
        content = [{"type": "input_text", "text": text}]
        await ws.send(json.dumps({"type": "conversation.item.create",
                                  "item": {"type": "message", "role": "user", "content": content}}))  # fmt: skip
        if started is not None:  # sessions that start together
            started.append(None)
            while len(started) < 2:
                await asyncio.sleep(0.01)
        await ws.send(json.dumps({"type": "response.create"}))
        first_audio, transcript, audio = None, [], []
        while True:
            event = await recv()
            kind = event["type"]
            if kind == "error":
                raise AssertionError(event)
            if kind == "response.output_audio.delta":
                first_audio = first_audio or time.perf_counter()
                audio.append(base64.b64decode(event["delta"]))
            elif kind == "response.output_audio_transcript.delta":
                transcript.append(event["delta"])
            elif kind == "response.done":
                assert event["response"]["status"] == "completed", event
                return "".join(transcript), b"".join(audio), (first_audio, time.perf_counter())


async def _http_stream(url: str, question: str, voice: str, tokens: int):
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused")
    stream = await client.chat.completions.create(
        model="tiny-omni", messages=[{"role": "user", "content": question}], stream=True,
        audio={"voice": voice, "format": "pcm16"}, modalities=["text", "audio"], temperature=0, seed=0,
        max_tokens=tokens,
    )  # fmt: skip
    text, pcm = [], []
    async for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            text.append(delta.content or "")
            if getattr(delta, "audio", None) and delta.audio.data:
                pcm.append(base64.b64decode(delta.audio.data))
    return "".join(text), b"".join(pcm)


def test_http_stream_and_two_realtime_turns_at_once_equal_each_alone(one_engine_server):
    url, ws_url = one_engine_server.url, one_engine_server.url.replace("http://", "ws://")
    turns = [("Hello there.", "Chelsie"), ("What is two and two?", "Ethan")]
    alone_http = asyncio.run(_http_stream(url, *HTTP_QUESTION))
    alone_realtime = [asyncio.run(_realtime_turn(ws_url, *turn))[:2] for turn in turns]
    assert alone_http[1] and all(audio for _, audio in alone_realtime)

    async def together():
        return await asyncio.gather(
            _http_stream(url, *HTTP_QUESTION), *(_realtime_turn(ws_url, *turn) for turn in turns)
        )

    for _ in range(2):
        http, *realtime = asyncio.run(together())
        assert http == alone_http
        assert [result[:2] for result in realtime] == alone_realtime
    engine = one_engine_server.app.state.omni.engine
    assert engine.active == 0  # every slot was given back


def test_two_realtime_sessions_are_answered_together(one_engine_server):
    ws_url = one_engine_server.url.replace("http://", "ws://")

    async def both():
        started: list = []
        return await asyncio.gather(*(_realtime_turn(ws_url, "Hello there.", "Chelsie", started) for _ in range(2)))

    (_, audio_a, times_a), (_, audio_b, times_b) = asyncio.run(both())
    assert audio_a == audio_b  # the same question, the same seed: the same reply
    # Answered together, not one after the other (with a model lock the second waited for the whole first reply):
    # both first audios come before either reply is done. An order of events, so load on the machine cannot fail it.
    assert max(times_a[0], times_b[0]) < min(times_a[1], times_b[1]), (times_a, times_b)


def test_http_stream_two_realtime_turns_and_a_space_turn_at_once(one_engine_server):
    """The four paths on one engine in one process, at once: each equals the same request alone (the Space seeds its
    replies, so its sampled reply is reproducible whatever runs beside it)."""
    url, ws_url = one_engine_server.url, one_engine_server.url.replace("http://", "ws://")
    turns = [("Hello there.", "Chelsie"), ("What is two and two?", "Ethan")]
    alone_space = _space_turn(url, "Tell me a story.")
    alone_http = asyncio.run(_http_stream(url, *HTTP_QUESTION))
    alone_realtime = [asyncio.run(_realtime_turn(ws_url, *turn))[:2] for turn in turns]
    assert alone_space[1] and alone_http[1] and all(audio for _, audio in alone_realtime)

    async def together():
        return await asyncio.gather(
            asyncio.to_thread(_space_turn, url, "Tell me a story."),
            _http_stream(url, *HTTP_QUESTION),
            *(_realtime_turn(ws_url, *turn) for turn in turns),
        )

    space, http, *realtime = asyncio.run(together())
    assert space == alone_space
    assert http == alone_http
    assert [result[:2] for result in realtime] == alone_realtime
    assert one_engine_server.app.state.omni.engine.active == 0
