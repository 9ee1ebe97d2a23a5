"""The server through the official `openai` client (sync and async) and curl: streamed speech equals `model.stream`,
concurrent replies are batched and each equals its single-request reply."""

import asyncio
import base64
import io
import json
import subprocess

import numpy as np
import soundfile

from omni_hf.serving.audio_encoding import pcm16_bytes, pcm16_to_float

QUESTION = "Say something about the sea."
GREEDY = dict(temperature=0, seed=0, max_tokens=12, modalities=["text", "audio"])


def _streamed(chunks) -> tuple[str, bytes, set]:
    text, pcm, ids = [], [], set()
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text.append(delta.content or "")
        audio = getattr(delta, "audio", None)
        if audio:
            ids.add(audio.id)  # the typed `ChoiceDeltaAudio` of the openai package
            if audio.data:
                pcm.append(base64.b64decode(audio.data))
    return "".join(text), b"".join(pcm), ids


def _spoken(question: str, voice: str, tokens: int = 12, audio_format: str = "pcm16", **extra) -> dict:
    """Keyword arguments of a greedy spoken chat completion."""
    return dict(
        model="tiny-omni",
        messages=[{"role": "user", "content": question}],
        audio={"voice": voice, "format": audio_format},
        **(GREEDY | {"max_tokens": tokens}),
        **extra,
    )


def test_models_and_health(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny-omni"]
    assert models[0].model_extra["voices"] == ["Chelsie", "Ethan"]
    health = json.loads(subprocess.run(["curl", "-s", server.url + "/health"], capture_output=True, check=True).stdout)
    assert health["status"] == "ok" and health["slots"] == 3


def test_sync_stream_equals_model_stream(server, tiny_served, reference):
    import openai

    model, processor = tiny_served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    stream = client.chat.completions.create(
        **_spoken(QUESTION, "Ethan", stream=True, stream_options={"include_usage": True})
    )
    chunks = list(stream)
    text, pcm, ids = _streamed(chunks)
    token_ids, expected = reference(QUESTION, "Ethan", 12)
    assert text == processor.decode(token_ids, skip_special_tokens=True)
    assert len(ids) == 1 and len(pcm) == 2 * expected.shape[0] == 2 * 120 * 480
    assert pcm == pcm16_bytes(expected)  # the same samples, bit for bit after PCM16 quantisation
    assert chunks[-1].usage.completion_tokens == len(token_ids) == 12
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_two_concurrent_async_streams_are_batched_and_equal_single_requests(server, tiny_served, reference):
    import openai

    model, processor = tiny_served
    engine = server.app.state.omni.engine
    questions = [("Tell me a story.", "Chelsie", 10), ("What is two and two?", "Ethan", 14)]

    async def ask(client, question, voice, tokens):
        stream = await client.chat.completions.create(**_spoken(question, voice, tokens, stream=True))
        return _streamed([chunk async for chunk in stream])

    async def main():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused")
        return await asyncio.gather(*(ask(client, *q) for q in questions))

    engine.batch_sizes = {"thinker": [], "talker": [], "dit": []}
    results = asyncio.run(main())
    assert all(max(engine.batch_sizes[stage]) == 2 for stage in ("thinker", "talker", "dit"))  # really batched
    for (text, pcm, _), (question, voice, tokens) in zip(results, questions):
        token_ids, expected = reference(question, voice, tokens)
        assert text == processor.decode(token_ids, skip_special_tokens=True)
        assert pcm == pcm16_bytes(expected)


def test_non_streaming_wav_and_text_only(server, tiny_served, reference):
    import openai

    model, processor = tiny_served
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    reply = client.chat.completions.create(**_spoken(QUESTION, "Ethan", audio_format="wav"))
    message = reply.choices[0].message
    audio, rate = soundfile.read(io.BytesIO(base64.b64decode(message.audio.data)), dtype="int16")
    _, expected = reference(QUESTION, "Ethan", 12)
    assert rate == 24000 and audio.tobytes() == pcm16_bytes(expected)
    assert message.audio.transcript == message.content and reply.usage.completion_tokens == 12
    text_only = client.chat.completions.create(
        model="tiny-omni", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=5
    )
    assert text_only.choices[0].message.audio is None and text_only.usage.completion_tokens == 5


def test_curl_streams_sse(server):
    body = {
        "model": "tiny-omni",
        "messages": [{"role": "user", "content": QUESTION}],
        "audio": {"voice": "Chelsie", "format": "pcm16"},
        "stream": True,
        **GREEDY,
    }
    out = subprocess.run(
        [
            "curl",
            "-sN",
            server.url + "/v1/chat/completions",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    events = [line[6:] for line in out.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    audio = b"".join(
        base64.b64decode(c["choices"][0]["delta"]["audio"]["data"])
        for c in chunks
        if "data" in c["choices"][0]["delta"].get("audio", {})
    )
    assert pcm16_to_float(audio).shape == (120 * 480,) and np.abs(pcm16_to_float(audio)).max() > 0
