"""`/v1/realtime` on 127.0.0.1 with the tiny model: the `openai` package's realtime client and a plain `websockets`
client. A spoken question in 100 ms packets gets the in-process reply; barge-in, cancel and malformed events."""

import asyncio
import base64
import io
import json
import time

import numpy as np
import pytest
import torch
import websockets

from omni_hf.omni import AudioChunk, OmniSession
from omni_hf.serving.vad import StreamingResampler, float_to_pcm16
from omni_hf.testing.media import make_image

PACKET = 2400  # 100 ms at 24 kHz


def _b64(samples) -> str:
    return base64.b64encode(float_to_pcm16(samples)).decode()


def _packets(audio):
    return [audio[i : i + PACKET] for i in range(0, audio.size, PACKET)]


@pytest.fixture(scope="module")
def question_24k(speech):
    return speech("What is the weather like in Paris today?", 24000)


def _in_process_reply(model, processor, audio_24k, greedy):
    """The same request answered in-process: OmniSession fed the same 16 kHz samples, seed 0 for token2wav."""
    session = OmniSession(model, processor)
    resampler = StreamingResampler(24000, 16000)
    for packet in _packets(audio_24k):
        session.append_audio(resampler.push(packet))
    events = list(session.stream("", generator=torch.Generator().manual_seed(0), **greedy))
    audio = np.concatenate([e.audio for e in events if isinstance(e, AudioChunk)])
    return processor.tokenizer.decode(events[-1].token_ids, skip_special_tokens=True), float_to_pcm16(audio)


def _wait_freed(app):
    for _ in range(600):
        if not app.state.realtime_sessions:
            return
        time.sleep(0.05)


async def _until(recv, kind, seen):
    while True:
        event = await recv()
        seen.append(event)
        if event["type"] == kind:
            return event


def test_openai_client_spoken_question_gets_the_in_process_reply(realtime_server, tiny_omni, question_24k, greedy):
    from openai import AsyncOpenAI

    app, port = realtime_server
    model, processor = tiny_omni

    async def talk():
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test-key", max_retries=0)
        connect = client.realtime.connect if hasattr(client, "realtime") else client.beta.realtime.connect
        async with connect(model="omni-tiny") as connection:
            created = await connection.recv()
            assert created.type == "session.created"
            await connection.session.update(
                session={
                    "type": "realtime",
                    "audio": {"input": {"turn_detection": None}, "output": {"voice": "Chelsie"}},
                }
            )
            events = []
            for packet in _packets(question_24k):
                await connection.input_audio_buffer.append(audio=_b64(packet))
            await connection.input_audio_buffer.commit()
            await connection.response.create()
            async for event in connection:
                events.append(event)
                if event.type in ("response.done", "error"):
                    break
            return events

    events = asyncio.run(talk())
    kinds = [e.type for e in events]
    assert "error" not in kinds, [e for e in events if e.type == "error"]
    assert kinds[0] == "session.updated" and "input_audio_buffer.committed" in kinds and "response.created" in kinds
    assert events[-1].type == "response.done" and events[-1].response.status == "completed"
    transcript = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    audio = b"".join(base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta")
    expected_text, expected_audio = _in_process_reply(model, processor, question_24k, greedy)
    assert transcript == expected_text
    assert len(audio) > 1000 and audio == expected_audio  # bit-exact pcm16


def test_websockets_client_server_vad_barge_in_and_multi_turn(realtime_server, question_24k):
    app, port = realtime_server
    silence = np.zeros(24000, dtype=np.float32)

    async def talk():
        headers = {"Authorization": "Bearer test-key", "OpenAI-Beta": "realtime=v1"}
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime", additional_headers=headers) as ws:

            async def recv():
                return json.loads(await asyncio.wait_for(ws.recv(), 60))

            seen = []
            created = await _until(recv, "session.created", seen)
            # beta session shape; server VAD is the default; a long reply so that there is time to interrupt it
            assert created["session"]["turn_detection"]["type"] == "server_vad"
            await ws.send(json.dumps({"type": "session.update", "session": {"max_response_output_tokens": 400}}))
            for packet in _packets(np.concatenate([silence[:12000], question_24k, silence])):
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(packet)}))
            await _until(recv, "response.audio_transcript.delta", seen)  # beta names: the reply is under way
            barge_at = time.perf_counter()
            for packet in _packets(np.concatenate([question_24k, silence])):  # the user talks over the reply
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(packet)}))
            first_done = await _until(recv, "response.done", seen)
            second_done = await _until(recv, "response.done", seen)
            return seen, first_done, second_done, barge_at

    seen, first, second, _ = asyncio.run(talk())
    _wait_freed(app)
    kinds = [e["type"] for e in seen]
    assert "error" not in kinds, [e for e in seen if e["type"] == "error"]
    assert kinds.count("input_audio_buffer.speech_started") == 2 and kinds.count("input_audio_buffer.committed") == 2
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index("input_audio_buffer.committed")
    assert "response.audio.delta" in kinds and "response.output_audio.delta" not in kinds
    assert first["response"]["status"] == "cancelled"
    assert first["response"]["status_details"]["reason"] == "turn_detected"
    assert second["response"]["status"] == "completed"
    assert app.state.realtime_sessions == {}  # the closed connection freed its session


def test_cut_reply_is_the_history_and_malformed_events_get_errors(realtime_server, tiny_omni):
    app, port = realtime_server
    model, processor = tiny_omni
    session_images = []

    async def talk():
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer test-key"}) as ws:

            async def recv():
                return json.loads(await asyncio.wait_for(ws.recv(), 120))

            seen = []
            await _until(recv, "session.created", seen)
            bad = [
                "not json",
                json.dumps({"type": "no.such.event"}),
                json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}),
                json.dumps({"type": "session.update", "session": {"voice": "Nobody"}}),
                json.dumps({"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}}),
                json.dumps({"type": "input_audio_buffer.commit"}),
                json.dumps({"type": "response.cancel"}),
                json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                         "content": [{"type": "input_image"}]}}),
            ]  # fmt: skip
            errors = []
            for raw in bad:
                await ws.send(raw)
                errors.append(await _until(recv, "error", seen))
            await ws.send(json.dumps({"type": "response.create"}))  # nothing to answer yet
            errors.append(await _until(recv, "error", seen))
            failed = await _until(recv, "response.done", seen)
            assert failed["response"]["status"] == "failed" and "Nothing to answer" in errors[-1]["error"]["message"]
            await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None,
                                                                            "modalities": ["text"]}}))  # fmt: skip
            await _until(recv, "session.updated", seen)
            picture = io.BytesIO()
            make_image(112, 84).save(picture, format="PNG")
            url = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
            content = [{"type": "input_image", "image_url": url}, {"type": "input_text", "text": "Hello"}]
            item = {"type": "message", "role": "user", "content": content}
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 300}}))
            await _until(recv, "response.output_text.delta", seen)
            session = next(iter(app.state.realtime_sessions.values()))
            await ws.send(json.dumps({"type": "response.cancel"}))
            cancelled = await _until(recv, "response.done", seen)
            history = session.conversation.input_ids[0].tolist() + session.conversation.pending
            session_images.extend(session.conversation.image_grids)
            await ws.send(json.dumps({"type": "response.create"}))  # still usable
            done = await _until(recv, "response.done", seen)
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            await _until(recv, "input_audio_buffer.cleared", seen)
            return errors, cancelled, done, session, history, seen

    errors, cancelled, done, session, history, seen = asyncio.run(talk())
    _wait_freed(app)
    codes = [e["error"]["code"] for e in errors]
    assert codes == ["invalid_json", "invalid_event_type", "invalid_event", "invalid_event", "invalid_event",
                     "input_audio_buffer_commit_empty", "response_cancel_not_active", "invalid_image", "invalid_request"]  # fmt: skip
    assert errors[3]["error"]["param"] == "session.voice" and "Nobody" in errors[3]["error"]["message"]
    assert errors[7]["error"]["param"] == "item.content[0].image_url"
    assert len(session_images) == 1  # the picture was part of the typed message
    assert cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"]["reason"] == "client_cancelled"
    cut = "".join(e["delta"] for e in seen[: seen.index(cancelled)] if e["type"] == "response.output_text.delta")
    # the history is the conversation so far with the cut reply (what was sent) closed by <|im_end|>
    tokenizer = processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert history[-2:] == [im_end, tokenizer("\n", add_special_tokens=False)["input_ids"][0]]
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    start = max(i for i in range(len(history)) if history[i : i + len(header)] == header) + len(header)
    kept = tokenizer.decode(history[start:-2], skip_special_tokens=True)
    assert len(cut) > 0 and kept.startswith(cut) and len(history[start:-2]) < 300
    assert done["response"]["status"] == "completed"
    assert session.conversation is None and app.state.realtime_sessions == {}  # freed on disconnect


def test_vanished_client_frees_its_session(realtime_server, question_24k):
    app, port = realtime_server

    async def talk():
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        ws = await websockets.connect(url, additional_headers={"Authorization": "Bearer test-key"})
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
        for packet in _packets(question_24k):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": _b64(packet)}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 400}}))
        while json.loads(await ws.recv())["type"] != "response.output_audio_transcript.delta":
            pass
        session = next(iter(app.state.realtime_sessions.values()))
        ws.transport.abort()  # no close handshake: the client just disappears
        for _ in range(600):
            if not app.state.realtime_sessions:
                break
            await asyncio.sleep(0.05)
        return session

    session = asyncio.run(talk())
    assert app.state.realtime_sessions == {}
    assert session.closed and session.conversation is None and session.response is None


def test_api_key_is_required(realtime_server):
    app, port = realtime_server

    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime") as ws:
            await ws.recv()

    with pytest.raises(websockets.exceptions.WebSocketException):
        asyncio.run(talk())
