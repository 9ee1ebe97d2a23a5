"""Serving tests: the tiny random model served by uvicorn on 127.0.0.1 (free port, a background thread) with its
reference replies, the realtime endpoint's app, and spoken questions from espeak-ng."""

import socket
import threading
import time

import numpy as np
import pytest
import torch

from omni_hf.omni import AudioChunk
from omni_hf.serving.protocol import ServerLimits
from omni_hf.serving.scheduler import SERVING_WINDOW

SPEECH_CODES = 120  # per reply: 2.4 s of audio, a few seconds on CPU
LIMITS = dict(max_tokens=64, talker_max_new_tokens=SPEECH_CODES, max_media_bytes=400_000, max_media_items=2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn running `app` in a thread; `url` is its base URL."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def tiny_served(tiny_omni_dir):
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor

    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    return model, OmniProcessor.from_pretrained(tiny_omni_dir)


@pytest.fixture(scope="session")
def server(tiny_served):
    from omni_hf.serving import create_app

    model, processor = tiny_served
    app = create_app(model, processor, model_id="tiny-omni", limits=ServerLimits(**LIMITS), max_active=3)
    with LiveServer(app) as live:
        yield live


def reference_reply(model, processor, text: str, speaker: str, max_tokens: int, seed: int = 0):
    """What `model.stream` gives for the same greedy request: (text ids, float32 audio)."""
    conversation = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    inputs = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    events = list(
        model.stream(
            **inputs,
            speaker=speaker,
            thinker_max_new_tokens=max_tokens,
            thinker_do_sample=False,
            talker_do_sample=False,
            talker_max_new_tokens=SPEECH_CODES,
            generator=torch.Generator().manual_seed(seed),
            window=SERVING_WINDOW,  # the server's token2wav chunking
        )
    )
    audio = torch.cat([torch.from_numpy(e.audio) for e in events if isinstance(e, AudioChunk)]).numpy()
    return events[-1].token_ids, audio


@pytest.fixture(scope="session")
def reference(tiny_served):
    """`reference(text, speaker, max_tokens)` → `model.stream`'s greedy (token ids, audio) for that request."""
    cache = {}

    def run(text, speaker, max_tokens):
        key = (text, speaker, max_tokens)
        if key not in cache:
            cache[key] = reference_reply(*tiny_served, text, speaker, max_tokens)
        return cache[key]

    return run


def spoken(text: str, rate: int) -> np.ndarray:
    """`text` read by espeak-ng, resampled to `rate` Hz, float32 mono."""
    from scipy.signal import resample_poly

    from omni_hf.testing.media import espeak_speech

    audio, source = espeak_speech(text)
    return resample_poly(audio, rate, source).astype(np.float32)


@pytest.fixture(scope="session")
def speech():
    return spoken


@pytest.fixture(scope="session")
def question_16k():
    return spoken("What is the weather like in Paris today?", 16000)


GREEDY = dict(thinker_max_new_tokens=6, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=30)


@pytest.fixture(scope="session")
def greedy():
    """The server's reply settings (greedy, short)."""
    return GREEDY


@pytest.fixture(scope="session")
def realtime_server(tiny_omni):
    """A FastAPI app with only `/v1/realtime`, served by uvicorn on 127.0.0.1 in a thread: (app, port)."""
    import socket
    import threading
    import time

    import uvicorn
    from fastapi import FastAPI

    from omni_hf.serving.realtime import add_realtime_routes

    model, processor = tiny_omni
    app = FastAPI()
    add_realtime_routes(app, model, processor, api_key="test-key", generation_kwargs=GREEDY, seed=0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield app, port
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread in the test thread too (the server's worker threads already get OMP_NUM_THREADS=1): two
    threads on a busy 2-core machine made these small forwards ~20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def live_server():
    """`live_server(app)`: a context manager serving `app` with uvicorn on 127.0.0.1 (`LiveServer`)."""
    return LiveServer


@pytest.fixture(scope="session")
def server_limits():
    """The serving tests' input limits and reply lengths."""
    return ServerLimits(**LIMITS)
