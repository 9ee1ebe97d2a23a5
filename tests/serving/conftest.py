"""The tiny random full model for the serving tests, and spoken questions from espeak-ng."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_omni(tiny_omni_dir):
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor

    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    return model, OmniProcessor.from_pretrained(tiny_omni_dir)


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
