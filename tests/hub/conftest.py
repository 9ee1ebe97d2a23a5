"""The stand-in Hub for upload tests, and a runner for client code against it.

huggingface_hub reads `HF_ENDPOINT` / `HF_HUB_OFFLINE` when it is imported, and the suite's conftest has imported it
(offline) already, so client code runs in a subprocess whose environment points at the stand-in.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_hub import TOKEN, FakeHub  # noqa: E402

HERE = Path(__file__).parent


def client_env(endpoint: str, home: Path, token: str | None = TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(home),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",  # the stand-in speaks LFS, not xet
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(HERE.parents[1] / "src"),
    )
    if token:
        env["HF_TOKEN"] = token
    return env


@pytest.fixture(scope="session")
def fake_hub(tmp_path_factory):
    hub = FakeHub(tmp_path_factory.mktemp("fake_hub"))
    endpoint = hub.start()
    yield hub, endpoint
    hub.stop()


@pytest.fixture(scope="session")
def hub_report(fake_hub, tmp_path_factory):
    """Run tests/hub/hub_client.py once against the stand-in: it pushes every artifact, loads each back and records
    what it found (weights equal, card metadata, snippet runs, bad inputs) in a JSON report."""
    hub, endpoint = fake_hub
    work = tmp_path_factory.mktemp("hub_client")
    report = work / "report.json"
    result = subprocess.run(
        [sys.executable, str(HERE / "hub_client.py"), str(work), str(report)],
        env=client_env(endpoint, work / "hf_home"),
        cwd=work,  # the card snippets write files (reply.wav): keep them out of the checkout
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0 or not report.is_file():
        raise AssertionError(
            f"hub_client.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return json.loads(report.read_text()), hub, work
