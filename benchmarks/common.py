"""Helpers shared by the benchmark scripts: per-process peak memory and running measurements in child processes."""

import json
import subprocess
import sys
from pathlib import Path


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB) since start or the last `reset_peak_rss()`."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    """This process's resident memory (MB) now."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def run_child(script: str, args: list[str]) -> dict:
    """Run `script` with `args` in a fresh process (so peak memory is its own) and parse its `RESULT {json}` line."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{Path(script).name} {' '.join(args)} failed:\n{out.stderr[-4000:]}")


def report(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)
