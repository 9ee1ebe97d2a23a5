"""Realtime benchmark: latency after the end of speech over `/v1/realtime`, streamed (chunked prefill) vs one-shot.

Same random small weights as `latency.py` (thinker hidden 512 x 8, talker 384 x 6, DiT 256 x 6), 2 torch threads,
the server (uvicorn on 127.0.0.1) and the client in one process. An espeak-ng recording of `--seconds` (10 and 30)
is sent as pcm16 at 24 kHz in 100 ms packets at real-time pace:

- streamed: `input_audio_buffer.append` per packet (the server prefills 2 s chunks as they arrive), then `commit` and
  `response.create` right after the last packet (manual turn detection: server VAD would add its silence time);
- one-shot: after the same recording time, the whole recording in one `conversation.item.create` (`input_audio`)
  plus `response.create`: the server encodes and prefills all of it after it arrives.

Latency is measured from the last packet (streamed) or the item (one-shot) to the first `response.output_text`/
`output_audio_transcript` delta and to the first `response.output_audio.delta`; the best of 2 runs each.

    python benchmarks/realtime.py                      # about 3 minutes
    python benchmarks/realtime.py --seconds 10
    python benchmarks/realtime.py --sessions 1 2 4     # concurrent sessions instead (server VAD)

`--sessions N ...`: N sessions at once each speak a `--seconds` question in real-time packets followed by silence,
with the server's default turn detection (silero-vad when installed, 500 ms of silence ends the turn); the latency is
from the end of speech (the last speech packet sent) to the session's first `response.output_audio.delta`, so it
includes the VAD's end-of-turn wait. p50 / p90 over every session of every run.
"""

import argparse
import asyncio
import base64
import json
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from speech import build_checkpoint, fixed_reply_kwargs, load, speech_code_filter

TEXT = (
    "Good morning. I would like to know what the weather will be like in Paris this week, because I am travelling "
    "there on Monday with my family, and we are planning to visit the museums, walk along the river, and eat in a "
    "few small restaurants near the old town. Should we bring umbrellas and warm coats, or will it be sunny and "
    "mild? Also, which day would be best for a boat trip, and is there anything special happening in the city? "
)


def recording(seconds: float) -> np.ndarray:
    """`seconds` of espeak-ng speech at 24 kHz (the text repeated as needed)."""
    from scipy.signal import resample_poly

    from omni_hf.testing.media import espeak_speech

    audio, rate = espeak_speech(TEXT * 3)
    audio = resample_poly(audio, 24000, rate).astype(np.float32)
    return audio[: int(seconds * 24000)]


def b64(samples: np.ndarray) -> str:
    from omni_hf.serving.vad import float_to_pcm16

    return base64.b64encode(float_to_pcm16(samples)).decode()


def serve(path: str, codes: int):
    import uvicorn
    from fastapi import FastAPI

    from omni_hf.serving.realtime import add_realtime_routes
    from omni_hf.testing.tokenizer import build_tiny_processor

    model = load("ours", path)
    kwargs = fixed_reply_kwargs(codes) | {"talker_logits_processor": speech_code_filter()}
    model.talker.generation_config.suppress_tokens = kwargs.pop("talker_logits_processor")[0].suppress_tokens.tolist()
    kwargs.pop("speaker")
    processor = build_tiny_processor()
    # random weights: keep the reply to ids the tiny tokenizer can write, so that text deltas carry text
    kwargs["thinker_suppress_tokens"] = list(
        range(len(processor.tokenizer), model.thinker.config.text_config.vocab_size)
    )
    app = FastAPI()
    add_realtime_routes(app, model, processor, generation_kwargs=kwargs)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


async def measure(port: int, audio: np.ndarray, streamed: bool) -> dict:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime", max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
        packets = [audio[i : i + 2400] for i in range(0, audio.size, 2400)]
        begin = time.perf_counter()
        for k, packet in enumerate(packets):  # real-time pace
            await asyncio.sleep(max(0.0, begin + k * 0.1 - time.perf_counter()))
            if streamed:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(packet)}))
        await asyncio.sleep(max(0.0, begin + len(packets) * 0.1 - time.perf_counter()))
        if streamed:
            end = time.perf_counter()
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        else:
            item = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": b64(audio)}]}
            end = time.perf_counter()
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        first_text = first_audio = None
        while first_audio is None:
            event = json.loads(await ws.recv())
            if event["type"] == "error":
                raise RuntimeError(event["error"])
            if event["type"].endswith("transcript.delta") or event["type"] == "response.output_text.delta":
                first_text = first_text or time.perf_counter() - end
            if event["type"] == "response.output_audio.delta":
                first_audio = time.perf_counter() - end
        await ws.send(json.dumps({"type": "response.cancel"}))
        while json.loads(await ws.recv())["type"] != "response.done":
            pass
    return {"first_text_s": first_text, "first_audio_s": first_audio}


CANCEL_SECONDS: list[float] = []  # response.cancel → its response.done, every session


async def speak_and_wait(port: int, audio: np.ndarray, start: float) -> float:
    """One session with server VAD: the question then 1.5 s of silence, at real-time pace from `start`; returns
    the seconds from the end of speech to the first audio delta."""
    import websockets

    silence = np.zeros(36000, dtype=np.float32)
    packets = [p for a in (audio, silence) for p in (a[i : i + 2400] for i in range(0, a.size, 2400))]
    speech_packets = -(-audio.size // 2400)
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime", max_size=None) as ws:
        await ws.recv()
        first_audio, end = asyncio.get_running_loop().create_future(), None

        async def receive():
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "error":
                    first_audio.set_exception(RuntimeError(event["error"]))
                    return
                if event["type"] == "response.output_audio.delta" and not first_audio.done():
                    first_audio.set_result(time.perf_counter())
                    return

        reader = asyncio.create_task(receive())
        for k, packet in enumerate(packets):
            await asyncio.sleep(max(0.0, start + k * 0.1 - time.perf_counter()))
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(packet)}))
            if k == speech_packets - 1:
                end = time.perf_counter()
        at = await asyncio.wait_for(first_audio, 600)
        reader.cancel()
        cancelled = time.perf_counter()
        await ws.send(json.dumps({"type": "response.cancel"}))
        while json.loads(await ws.recv())["type"] != "response.done":
            pass
        CANCEL_SECONDS.append(time.perf_counter() - cancelled)
    return at - end


async def concurrent(port: int, audio: np.ndarray, sessions: int) -> list[float]:
    start = time.perf_counter() + 0.5
    return list(await asyncio.gather(*(speak_and_wait(port, audio, start) for _ in range(sessions))))


def main_sessions(args, port) -> None:
    audio = recording(args.seconds[0])
    asyncio.run(concurrent(port, recording(2.0), 1))  # warm-up
    print(
        f"Concurrent realtime sessions: {args.seconds[0]:g} s question each, server VAD, small config, 2 torch threads"
    )
    print("| sessions | first audio after end of speech: p50 | p90 | samples | cancel → response.done p50 |")
    print("|---|---|---|---|---|")
    for n in args.sessions:
        CANCEL_SECONDS.clear()
        latencies = [x for _ in range(args.runs) for x in asyncio.run(concurrent(port, audio, n))]
        p50, p90 = np.percentile(latencies, [50, 90])
        cancel = np.percentile(CANCEL_SECONDS, 50)
        print(f"| {n} | {p50:.2f} s | {p90:.2f} s | {len(latencies)} | {cancel:.3f} s |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0], help="spoken input lengths")
    parser.add_argument("--codes", type=int, default=100, help="speech codes of each reply (fixed length)")
    parser.add_argument("--runs", type=int, default=2, help="runs per case (the best is kept)")
    parser.add_argument("--sessions", type=int, nargs="+", help="concurrent sessions per case (e.g. 1 2 4)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        build_checkpoint(Path(tmp))
        server, port = serve(tmp, args.codes)
        if args.sessions:
            main_sessions(args, port)
            server.should_exit = True
            return
        asyncio.run(measure(port, recording(2.0), streamed=True))  # warm-up
        rows = []
        for seconds in args.seconds:
            audio = recording(seconds)
            result = {}
            for mode in ("streamed", "one_shot"):
                runs = [asyncio.run(measure(port, audio, mode == "streamed")) for _ in range(args.runs)]
                result[mode] = {k: min(r[k] for r in runs) for k in runs[0]}
            rows.append((seconds, result))
        server.should_exit = True
    print(
        "Realtime benchmark: /v1/realtime on 127.0.0.1, small config, 2 torch threads (latency after the last packet)"
    )
    print("| spoken input | first text: one-shot / streamed | first audio: one-shot / streamed |")
    print("|---|---|---|")
    for seconds, r in rows:
        cells = []
        for key in ("first_text_s", "first_audio_s"):
            one, streamed = r["one_shot"][key], r["streamed"][key]
            cells.append(f"{one:.3f} s / {streamed:.3f} s ({one / streamed:.1f}x sooner)")
        print(f"| {seconds:g} s | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
