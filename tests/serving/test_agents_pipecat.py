"""Pipecat's `OpenAIRealtimeLLMService` receive loop (`_receive_task_handler`, its `parse_server_event` and event
handlers, run as in a pipeline) on a socket to `omni-hf serve`'s `/v1/realtime` on 127.0.0.1 with the tiny model.
The frames the service would push into a pipeline are recorded instead; client events are Pipecat's own models.

Covered: the session setup Pipecat sends on `session.created`, a text item and its reply (LLM/TTS frames), an
item retrieve and delete, a barge-in (server VAD speech over the reply: Pipecat truncates the playing item), a spoken
question, and a tool call round trip (`run_function_calls` gets the call; the output goes back as an item). Pipecat
ends its receive loop on any `error` event but two, so none may come.
"""

import asyncio
import base64
import json

import numpy as np
import pytest
from agents_server import FORCED_CALL, agents_server  # noqa: F401 - the fixture

pytest.importorskip("pipecat.services.openai.realtime.llm")

TOOL = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip


def test_pipecat_realtime_service(agents_server, speech, monkeypatch):  # noqa: F811
    from pipecat.frames.frames import LLMFullResponseEndFrame, LLMFullResponseStartFrame, TTSAudioRawFrame
    from pipecat.services.openai.realtime import events, llm
    from websockets.asyncio.client import connect

    live, script = agents_server
    question = speech("What is the weather like in Paris today?", 24000)
    raw, frames, errors, calls = [], [], [], []
    parse = events.parse_server_event

    def recording_parse(message):
        raw.append(json.loads(message))
        return parse(message)  # raises on an event Pipecat cannot validate: the loop (and the test) fails

    monkeypatch.setattr(events, "parse_server_event", recording_parse)

    async def run():
        service = llm.OpenAIRealtimeLLMService(
            api_key="not-needed",
            base_url=f"ws://127.0.0.1:{live.port}/v1/realtime",
            settings=llm.OpenAIRealtimeLLMService.Settings(model="omni-tiny"),
        )

        async def push_frame(frame, direction=None):
            frames.append(frame)

        async def broadcast_frame(frame_class, **kwargs):
            frames.append(frame_class)

        async def push_error(error_msg=None, exception=None, **kwargs):
            errors.append(error_msg)

        async def run_function_calls(function_calls):
            calls.extend(function_calls)

        async def nothing(*args, **kwargs):
            return None

        service.push_frame, service.broadcast_frame, service.push_error = push_frame, broadcast_frame, push_error
        service.run_function_calls = run_function_calls
        for name in ("start_ttfb_metrics", "stop_ttfb_metrics", "start_processing_metrics", "stop_processing_metrics",
                     "start_llm_usage_metrics", "stop_all_metrics"):  # fmt: skip
            setattr(service, name, nothing)
        service._websocket = await connect(service.base_url, additional_headers=await service._auth_headers())
        loop = asyncio.create_task(service._receive_task_handler())

        def kinds():
            return [e["type"] for e in raw]

        async def until(kind, count=1, timeout=120):
            deadline = asyncio.get_running_loop().time() + timeout
            while kinds().count(kind) < count:
                if loop.done():
                    loop.result()  # re-raise a parser failure
                    raise AssertionError(f"Pipecat's receive loop ended (an error event?) before {kind}: {errors}")
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"timed out waiting for {kind}")
                await asyncio.sleep(0.02)
            return [e for e in raw if e["type"] == kind][count - 1]

        send = service.send_client_event
        try:
            await until("session.updated")  # Pipecat sent its session settings on session.created
            # a text item and its reply
            item = events.ConversationItem(type="message", role="user",
                                           content=[events.ItemContent(type="input_text", text="Hello there")])  # fmt: skip
            await send(events.ConversationItemCreateEvent(item=item))
            await until("conversation.item.added")
            await send(events.ResponseCreateEvent())
            first = await until("response.done")
            text_frames = [f for f in frames if type(f).__name__ == "TTSTextFrame"]
            first_frames = list(frames)
            await send(events.ConversationItemRetrieveEvent(item_id=item.id))
            retrieved = await until("conversation.item.retrieved")
            await send(events.ConversationItemDeleteEvent(item_id=item.id))
            await until("conversation.item.deleted")

            # barge-in: the user speaks over a reply; Pipecat truncates the item it was playing
            await send(events.ConversationItemCreateEvent(item=events.ConversationItem(
                type="message", role="user", content=[events.ItemContent(type="input_text", text="Tell me more")])))  # fmt: skip
            await send(events.ResponseCreateEvent())
            await until("response.output_audio.delta", kinds().count("response.output_audio.delta") + 1)
            silence = np.zeros(24000, dtype=np.float32)
            pcm = (np.concatenate([question, silence]) * 32767).astype(np.int16)
            for start in range(0, pcm.size, 2400):
                chunk = base64.b64encode(pcm[start : start + 2400].tobytes()).decode()
                await send(events.InputAudioBufferAppendEvent(audio=chunk))
            await until("conversation.item.truncated")
            await until("response.done", 3)  # the cancelled reply, then the spoken question's

            # a tool call round trip
            await send(events.SessionUpdateEvent(session=events.SessionProperties(tools=[TOOL])))
            await until("session.updated", kinds().count("session.updated") + 1)
            script.text = FORCED_CALL
            await send(events.ConversationItemCreateEvent(item=events.ConversationItem(
                type="message", role="user", content=[events.ItemContent(type="input_text", text="Weather?")])))  # fmt: skip
            await send(events.ResponseCreateEvent())
            await until("response.done", 4)
            script.text = None
            output = events.ConversationItem(type="function_call_output", call_id=calls[0].tool_call_id,
                                             output=json.dumps({"weather": "sunny"}))  # fmt: skip
            await send(events.ConversationItemCreateEvent(item=output))
            await send(events.ResponseCreateEvent())
            last = await until("response.done", 5)
            return first, first_frames, text_frames, retrieved, last
        finally:
            loop.cancel()
            await service._websocket.close()

    first, first_frames, text_frames, retrieved, last = asyncio.run(run())
    kinds = [e["type"] for e in raw]
    assert "error" not in kinds and errors == [], [e for e in raw if e["type"] == "error"]
    assert kinds.index("rate_limits.updated") == kinds.index("response.done") + 1  # validated by Pipecat's parser
    # the text item's reply went through Pipecat's handlers as LLM / TTS frames
    assert any(isinstance(f, LLMFullResponseStartFrame) for f in first_frames)
    assert any(isinstance(f, LLMFullResponseEndFrame) for f in first_frames)
    assert sum(len(f.audio) for f in first_frames if isinstance(f, TTSAudioRawFrame)) > 0
    transcript = first["response"]["output"][0]["content"][0]["transcript"]
    assert "".join(f.text for f in text_frames) == transcript and transcript
    assert first["response"]["usage"]["total_tokens"] > 0 and first["response"]["status_details"] is None
    assert retrieved["item"]["content"][0]["text"] == "Hello there"
    # barge-in: the cancelled reply's response.done comes before the next response.created
    dones = [i for i, e in enumerate(raw) if e["type"] == "response.done"]
    cancelled = dones[1]
    assert raw[cancelled]["response"]["status"] == "cancelled"
    created = [i for i, e in enumerate(raw) if e["type"] == "response.created"]
    assert created[2] > cancelled
    truncated = next(e for e in raw if e["type"] == "conversation.item.truncated")
    assert truncated["item_id"] == raw[cancelled]["response"]["output"][0]["id"]
    # the tool call: Pipecat ran it with the parsed arguments; the reply after its output completed
    assert [(c.function_name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert last["response"]["status"] == "completed"
