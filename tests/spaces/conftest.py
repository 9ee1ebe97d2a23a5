"""One launch of spaces/omni_chat/app.py on 127.0.0.1 with a tiny random model, shared by the Space tests.

The app runs under `timeout`, so it stops by itself even if the test run dies.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

APP = Path(__file__).parents[2] / "spaces" / "omni_chat" / "app.py"
LIFETIME_S = 900  # the tests of the session share one app; a loaded machine makes them slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def space_media(tmp_path_factory):
    from omni_hf.testing.demo import build_demo_model
    from omni_hf.testing.media import write_image

    base = tmp_path_factory.mktemp("space")
    return {
        "model": build_demo_model(base / "tiny-omni"),
        "image": Path(write_image(base / "shapes.png")),
        "dir": base,
    }


@pytest.fixture(scope="session")
def space_url(space_media):
    port = _free_port()
    env = dict(
        os.environ,
        OMNI_MODEL=str(space_media["model"]),
        OMNI_MAX_NEW_TOKENS="4",
        OMNI_MAX_SPEECH_CODES="30",
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
    )
    env.pop("SPACE_ID", None)
    log = open(space_media["dir"] / "app.log", "w")
    process = subprocess.Popen(
        ["timeout", str(LIFETIME_S), sys.executable, str(APP)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(360):  # bounded wait for the server (slow when the machine is shared)
            if process.poll() is not None:
                break
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("the Space did not start within 180 s")
        if process.poll() is not None:
            raise AssertionError(f"the Space exited:\n{(space_media['dir'] / 'app.log').read_text()[-4000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
