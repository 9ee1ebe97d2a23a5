"""`omni-hf bench serve` against a real `omni-hf serve` of the tiny model on 127.0.0.1 (a child process): the table
and the PNG at 1/2/4/8 clients, and clear errors in the report for a server that refuses (wrong key) or is gone."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from omni_hf.cli import main
from omni_hf.evaluation.bench_serve import percentiles, summarize_level

KEY = "bench-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_omni_dir, tmp_path_factory):
    """`omni-hf serve` of the tiny model (short replies) on a free 127.0.0.1 port, with an API key: its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "omni_hf.cli", "serve", str(tiny_omni_dir), "--port", str(port), "--threads", "1"]
    command += ["--max-tokens", "8", "--max-speech-codes", "20", "--api-key", KEY, "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"omni-hf serve did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def test_bench_serve_table_and_figure_at_1_2_4_8(served, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "serve", served, "--concurrency", "1", "2", "4", "8", "--requests", "4", "--max-tokens", "8"]
    assert main([*argv, "--api-key", KEY, "--timeout", "120", "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    assert report["model"] and [r["concurrency"] for r in report["levels"]] == [1, 2, 4, 8]
    for row in report["levels"]:
        assert row["ok"] == row["requests"] == 4 and row["errors"] == 0, row
        assert 0 < row["ttft_p50"] <= row["latency_p50"] and 0 < row["ttfa_p50"] <= row["ttfa_p90"] <= row["ttfa_p99"]
        assert row["throughput"] > 0 and row["rtf_mean"] > 0 and row["audio_seconds"] > 0
    table = (out / "bench.md").read_text()
    assert table.count("| 4/4 |") == 4 and "TTFA p50" in table and "speech s / wall s" in table
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    print("\n" + table)
    assert "| 8 | 4/4 |" in capsys.readouterr().out


def test_refusing_or_absent_server_is_a_clear_error(served, tmp_path, capsys):
    out = tmp_path / "refused"
    argv = ["bench", "serve", served, "--concurrency", "1", "--requests", "2", "--warmup", "0", "--out", str(out)]
    assert main([*argv, "--api-key", "wrong"]) == 2
    assert "listing the models failed: HTTP 401" in capsys.readouterr().err
    assert main([*argv, "--api-key", "wrong", "--model", "tiny"]) == 2
    assert "every request failed: HTTP 401" in capsys.readouterr().err
    assert "HTTP 401" in (out / "bench.md").read_text()  # the report names the error too
    gone = f"http://127.0.0.1:{_free_port()}"
    assert main(["bench", "serve", gone, "--requests", "1", "--model", "m", "--out", str(out)]) == 2
    assert "cannot connect to the server" in capsys.readouterr().err


def test_level_summary_counts_errors_and_percentiles():
    ok = {"ttft": 0.1, "ttfa": 0.5, "latency": 1.0, "audio_seconds": 2.0, "rtf": 0.5}
    silent = {"ttft": 0.1, "ttfa": None, "latency": 1.0, "audio_seconds": 0.0, "rtf": None}
    row = summarize_level(2, [ok, ok, silent], ["HTTP 429: busy"], wall=2.0)
    assert (row["requests"], row["ok"], row["errors"]) == (4, 2, 2)
    assert row["throughput"] == 2.0 and row["ttfa_p99"] == 0.5
    assert row["error_messages"] == ["HTTP 429: busy", "reply without audio"]
    assert percentiles([1, 2, 3, 4, 5]) == {"p50": 3.0, "p90": 4.6, "p99": pytest.approx(4.96)}
