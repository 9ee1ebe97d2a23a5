"""LiveKit Agents' own OpenAI realtime client (`livekit-plugins-openai`'s `RealtimeModel` / `RealtimeSession`, run
standalone without a room) against `omni-hf serve`'s `/v1/realtime` on 127.0.0.1 with the tiny model.

Its defaults are kept (voice `marin`, `semantic_vad`, input transcription on): they are mapped, not refused. Covered:
a text item through `update_chat_ctx` and `generate_reply` (waits for `conversation.item.added` and the echoed
`response.metadata.client_event_id`), a tool call round trip, item delete, a barge-in with `interrupt` +
`truncate`, and a spoken question turned by the server VAD with its transcription.
"""

import asyncio

import numpy as np
import pytest
from agents_server import FORCED_CALL, agents_server  # noqa: F401 - the fixture

pytest.importorskip("livekit.plugins.openai")


async def _wait(predicate, what: str, timeout: float = 60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def _consume(generation):
    """The text and audio frames of every message of a LiveKit generation, and its function calls."""
    texts, frames, calls, modalities = [], [], [], []

    async def messages():
        async for message in generation.message_stream:
            text = "".join([t async for t in message.text_stream])
            frames.extend([f async for f in message.audio_stream])
            texts.append(text)
            modalities.append(await message.modalities)

    async def functions():
        async for call in generation.function_stream:
            calls.append(call)

    await asyncio.wait_for(asyncio.gather(messages(), functions()), 120)
    return texts, frames, calls, modalities


def _server_types(events):
    return [e["type"] for e in events]


def test_livekit_realtime_session(agents_server, speech):  # noqa: F811
    from livekit import rtc
    from livekit.agents import llm
    from livekit.plugins import openai as lk_openai

    live, script = agents_server
    app = live.app
    question = speech("What is the weather like in Paris today?", 24000)

    @llm.function_tool
    async def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    async def run():
        import aiohttp

        async with aiohttp.ClientSession() as http:
            model = lk_openai.realtime.RealtimeModel(
                base_url=f"{live.url}/v1", api_key="not-needed", model="omni-tiny", http_session=http
            )
            session = model.session()
            seen, errors = [], []
            session.on("openai_server_event_received", seen.append)
            session.on("error", errors.append)
            transcripts = []
            session.on("input_audio_transcription_completed", transcripts.append)
            generations = []
            session.on("generation_created", generations.append)
            try:
                await _wait(lambda: "session.updated" in _server_types(seen), "session.updated")
                updated = next(e for e in seen if e["type"] == "session.updated")["session"]
                await session.update_instructions("You answer questions about the weather.")

                # a text item (update_chat_ctx waits for conversation.item.added) and a reply (generate_reply waits for
                # response.created with its client_event_id in the metadata)
                chat_ctx = session.chat_ctx.copy()
                chat_ctx.add_message(role="user", content="Hello there")
                await session.update_chat_ctx(chat_ctx)
                user_item = session.chat_ctx.items[-1]
                generation = await asyncio.wait_for(session.generate_reply(), 30)
                texts, frames, _, modalities = await _consume(generation)
                first_done = [e for e in seen if e["type"] == "response.done"][-1]

                # a tool call: the forced reply is a <tool_call> block; LiveKit gets a FunctionCall, sends the output
                await session.update_tools([get_weather])
                script.text = FORCED_CALL
                generation = await asyncio.wait_for(session.generate_reply(), 30)
                _, _, calls, _ = await _consume(generation)
                script.text = None
                chat_ctx = session.chat_ctx.copy()
                chat_ctx.items.append(llm.FunctionCallOutput(call_id=calls[0].call_id, name=calls[0].name,
                                                             output="sunny in Paris", is_error=False))  # fmt: skip
                await session.update_chat_ctx(chat_ctx)
                generation = await asyncio.wait_for(session.generate_reply(), 30)
                after_tool = await _consume(generation)

                # delete the first user item
                chat_ctx = session.chat_ctx.copy()
                chat_ctx.items = [i for i in chat_ctx.items if i.id != user_item.id]
                await session.update_chat_ctx(chat_ctx)

                # barge-in: interrupt after the first audio, truncate at what was "played"
                script.text = None
                generation = await asyncio.wait_for(session.generate_reply(), 30)
                message = await asyncio.wait_for(generation.message_stream.__anext__(), 60)
                first_frame = await asyncio.wait_for(message.audio_stream.__anext__(), 60)
                session.interrupt()
                heard_ms = int(first_frame.duration * 1000) // 2
                session.truncate(message_id=message.message_id, modalities=["audio", "text"], audio_end_ms=heard_ms)
                await _wait(
                    lambda: "conversation.item.truncated" in _server_types(seen), "conversation.item.truncated"
                )
                cancelled_done = [e for e in seen if e["type"] == "response.done"][-1]

                # a spoken question: the server VAD (semantic_vad, mapped) commits it and answers; transcription too
                count = len(generations)
                silence = np.zeros(24000, dtype=np.float32)
                pcm = (np.concatenate([silence[:6000], question, silence]) * 32767).astype(np.int16)
                for start in range(0, pcm.size, 2400):
                    chunk = pcm[start : start + 2400]
                    session.push_audio(rtc.AudioFrame(chunk.tobytes(), 24000, 1, chunk.size))
                    await asyncio.sleep(0)
                await _wait(lambda: len(generations) > count, "the spoken question's generation", 120)
                spoken = await _consume(generations[-1])
                await _wait(lambda: transcripts, "input_audio_transcription_completed", 120)
                server_session = next(iter(app.state.realtime_sessions.values()))
                items = [dict(i) for i in server_session.log.items]
                return (seen, errors, updated, texts, frames, modalities, first_done, calls, after_tool, user_item,
                        cancelled_done, spoken, transcripts, items, server_session)  # fmt: skip
            finally:
                await session.aclose()

    (seen, errors, updated, texts, frames, modalities, first_done, calls, after_tool, user_item, cancelled_done,
     spoken, transcripts, items, server_session) = asyncio.run(run())  # fmt: skip
    kinds = _server_types(seen)
    assert errors == [] and "error" not in kinds, [e for e in seen if e["type"] == "error"]
    # LiveKit's defaults are mapped: voice marin → the default speaker, semantic_vad → server VAD, 1 s wait
    assert updated["audio"]["output"]["voice"] == "Chelsie"
    assert updated["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert updated["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 1000
    # the text item's reply: text and audio through LiveKit's streams, equal to what the server sent
    assert modalities[0] == ["audio", "text"] and len(frames) > 0
    assert texts[0] == first_done["response"]["output"][0]["content"][0]["transcript"] and texts[0]
    assert first_done["response"]["usage"]["total_tokens"] > first_done["response"]["usage"]["input_tokens"] > 0
    # the tool call round trip
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]
    assert after_tool[0] and "error" not in kinds
    assert any(i["type"] == "function_call_output" and i["output"] == "sunny in Paris" for i in items)
    # the deleted item is gone; the truncated reply was cancelled and its response.done came before the next one's
    assert user_item.id not in [i["id"] for i in items]
    assert cancelled_done["response"]["status"] == "cancelled"
    created_after = [
        i for i, e in enumerate(seen) if e["type"] == "response.created" and i > seen.index(cancelled_done)
    ]
    assert created_after, "the spoken question got a response"
    # the spoken question: committed by the server VAD, transcribed, answered with audio
    assert kinds.count("input_audio_buffer.speech_started") >= 1 and "input_audio_buffer.committed" in kinds
    assert len(spoken[1]) > 0
    assert isinstance(transcripts[0].transcript, str)
    spoken_item = transcripts[0].item_id
    added = next(
        i for i, e in enumerate(seen) if e["type"] == "conversation.item.added" and e["item"]["id"] == spoken_item
    )
    completed = kinds.index("conversation.item.input_audio_transcription.completed")
    assert kinds.index("input_audio_buffer.committed") < added < completed  # the protocol's order
