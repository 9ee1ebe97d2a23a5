"""`/v1/realtime` protocol details the voice-agent frameworks rely on, with a plain `websockets` client against
`omni-hf serve`'s app: session fields mapped or refused without losing the rest of the update, items inserted at the
root / deleted / retrieved (the conversation replayed), out-of-band responses, serve's limits, beta names."""

import asyncio
import json

import websockets
from agents_server import SPEECH_CODE_LIMIT, agents_server  # noqa: F401 - the fixture


async def _session(port, beta=False):
    headers = {"OpenAI-Beta": "realtime=v1"} if beta else {}
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime", additional_headers=headers)
    seen = []

    async def until(kind):
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 120))
            seen.append(event)
            if event["type"] == kind:
                return event

    await until("session.created")
    return ws, until, seen


def _text(text, role="user", **extra):
    kind = "input_text" if role == "user" else "text"
    return json.dumps({"type": "conversation.item.create", **extra,
                       "item": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}})  # fmt: skip


def test_session_fields_mapped_or_refused_and_the_rest_applies(agents_server):  # noqa: F811
    live, _ = agents_server

    async def talk():
        ws, until, seen = await _session(live.port)
        async with ws:
            session = {"type": "realtime", "instructions": "Be brief.", "audio": {
                "output": {"voice": "Nobody"}, "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"},
                                                         "noise_reduction": {"type": "near_field"}}}}  # fmt: skip
            await ws.send(json.dumps({"type": "session.update", "session": session}))
            error = await until("error")
            updated = await until("session.updated")
            await ws.send(json.dumps({"type": "session.update", "session": {"audio": {"output": {"voice": "marin"}}}}))
            mapped = await until("session.updated")
            return error, updated, mapped, seen

    error, updated, mapped, seen = asyncio.run(talk())
    assert error["error"]["param"] == "session.audio.output.voice" and "Nobody" in error["error"]["message"]
    assert updated["session"]["instructions"] == "Be brief."  # applied despite the refused voice
    turn = updated["session"]["audio"]["input"]["turn_detection"]
    assert turn["type"] == "semantic_vad" and turn["silence_duration_ms"] == 1500
    assert mapped["session"]["audio"]["output"]["voice"] == "Chelsie"
    assert [e["type"] for e in seen].count("error") == 1


def test_items_replayed_out_of_band_responses_and_limits(agents_server):  # noqa: F811
    live, _ = agents_server
    app = live.app

    async def talk():
        ws, until, seen = await _session(live.port)
        async with ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"output_modalities": ["audio"],
                                                                            "audio": {"input": {"turn_detection": None}}}}))  # fmt: skip
            await until("session.updated")
            await ws.send(_text("first"))
            first = await until("conversation.item.added")
            await ws.send(_text("Earlier answer", role="assistant", previous_item_id="root"))
            root = await until("conversation.item.added")
            await ws.send(_text("You are terse.", role="system"))
            await until("conversation.item.done")
            await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": "nope"}))
            missing = await until("error")
            await ws.send(json.dumps({"type": "response.create", "event_id": "e1",
                                      "response": {"max_output_tokens": 100000, "metadata": {"client_event_id": "x"}}}))  # fmt: skip
            created = await until("response.created")
            done = await until("response.done")
            session = next(iter(app.state.realtime_sessions.values()))
            history = session.processor.tokenizer.decode(session.conversation.input_ids[0].tolist())
            count = len(session.log.items)
            await ws.send(json.dumps({"type": "response.create", "response": {
                "conversation": "none", "instructions": "Say yes.", "output_modalities": ["text"]}}))  # fmt: skip
            out_of_band = await until("response.done")
            after = len(session.log.items)
            await ws.send(json.dumps({"type": "conversation.item.delete", "item_id": first["item"]["id"]}))
            await until("conversation.item.deleted")
            return first, root, missing, created, done, history, count, out_of_band, after, seen, session

    first, root, missing, created, done, history, count, out_of_band, after, seen, session = asyncio.run(talk())
    assert first["previous_item_id"] is None and root["previous_item_id"] is None
    assert missing["error"]["code"] == "item_retrieve_invalid_item_id"
    # the replayed conversation: the item inserted at the root comes first, the system item is a system turn
    assert history.index("<|im_start|>assistant\nEarlier answer") < history.index("<|im_start|>user\nfirst")
    assert "<|im_start|>system\nYou are terse.<|im_end|>" in history
    assert created["response"]["metadata"] == {"client_event_id": "x"} == done["response"]["metadata"]
    usage = done["response"]["usage"]
    assert usage["output_token_details"]["text_tokens"] <= 64  # serve's --max-tokens caps max_output_tokens 100000
    assert 0 < usage["speech_codes"] <= SPEECH_CODE_LIMIT  # serve's --max-speech-codes
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert done["response"]["output"][0]["content"][0]["type"] == "audio"
    # conversation "none": a reply, not added to the items
    assert out_of_band["response"]["status"] == "completed" and out_of_band["response"]["conversation_id"] is None
    assert out_of_band["response"]["output"][0]["content"][0]["type"] == "text" and after == count
    assert first["item"]["id"] not in [i["id"] for i in session.log.items]
    assert "error" not in [e["type"] for e in seen if e is not missing]


def test_beta_clients_keep_beta_names(agents_server):  # noqa: F811
    live, _ = agents_server

    async def talk():
        ws, until, seen = await _session(live.port, beta=True)
        async with ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"modalities": ["text"], "turn_detection": None}}))  # fmt: skip
            await until("session.updated")
            await ws.send(_text("hi"))
            await until("conversation.item.created")
            await ws.send(json.dumps({"type": "response.create"}))
            await until("response.done")
            return [e["type"] for e in seen]

    kinds = asyncio.run(talk())
    assert "response.text.delta" in kinds and "response.output_text.delta" not in kinds
    assert "conversation.item.added" not in kinds and "error" not in kinds


def test_a_spoken_turn_that_cannot_start_gives_one_error(agents_server, speech):  # noqa: F811
    """A reply holding a media placeholder token (here forced: `<|VIDEO|>`) makes the next turn's prefill fail (a
    known limit of `OmniConversation`); the spoken turn then gives one error, not one per packet, and its item leaves
    the conversation's items. Pipecat ends its session on any such error, so the flood mattered."""
    live, script = agents_server
    question = speech("What is the weather like?", 24000)

    async def talk():
        ws, until, seen = await _session(live.port)
        async with ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"output_modalities": ["text"],
                                                                            "audio": {"input": {"turn_detection": None}}}}))  # fmt: skip
            await until("session.updated")
            await ws.send(_text("hi"))
            script.text = "x<|VIDEO|>"
            try:
                await ws.send(json.dumps({"type": "response.create"}))
                await until("response.done")
            finally:
                script.text = None
            for start in range(0, question.size, 2400):
                audio = (question[start : start + 2400] * 32767).astype("<i2").tobytes()
                await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                          "audio": __import__("base64").b64encode(audio).decode()}))  # fmt: skip
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            committed = await until("input_audio_buffer.committed")
            await ws.send(json.dumps({"type": "response.create"}))  # queued after the turn's pieces
            await until("response.created")
            done = await until("response.done")
            await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": committed["item_id"]}))
            missing = await until("error")
            return seen, done, missing

    seen, done, missing = asyncio.run(talk())
    errors = [e for e in seen[: seen.index(done)] if e["type"] == "error"]
    assert len(errors) == 2  # the turn's one error (not one per packet), then the response's
    assert (
        all("video placeholders" in e["error"]["message"] for e in errors) and done["response"]["status"] == "failed"
    )
    assert missing["error"]["code"] == "item_retrieve_invalid_item_id"  # its item is gone
