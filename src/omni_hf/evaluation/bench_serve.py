"""`omni-hf bench serve URL`: latency and throughput of a running OpenAI-compatible speech server (ours or any other)
with the official `openai` client, streaming text and audio, at each concurrency level.

Per request: time to first text delta (TTFT), time to first audio packet (TTFA), total time, seconds of speech
(`pcm16` at 24 kHz) and RTF (total time / speech seconds). Per level: p50/p90/p99 of each, mean RTF, throughput
(seconds of speech per wall second) and requests per second, errors with their messages. Bounded: `requests`
requests per level, each with `timeout` seconds, and the level stops sending new requests after `level_timeout`.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from dataclasses import dataclass

import numpy as np

from ..processing.audio import TOKEN2WAV_SAMPLING_RATE as PCM_RATE

PERCENTILES = (50, 90, 99)


def percentiles(values: list[float], points=PERCENTILES) -> dict[str, float]:
    """`{"p50": ..., "p90": ..., "p99": ...}` of `values` (NaN each when empty)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    return {f"p{p}": float(np.percentile(values, p)) if values else float("nan") for p in points}


@dataclass
class StreamTimer:
    """Times one streamed reply: call `text()` / `audio(samples)` as deltas arrive, `done()` at the end."""

    start: float = 0.0
    first_text: float | None = None
    first_audio: float | None = None
    samples: int = 0
    total: float | None = None

    def __post_init__(self):
        self.start = time.perf_counter()

    def text(self) -> None:
        if self.first_text is None:
            self.first_text = time.perf_counter() - self.start

    def audio(self, samples: int) -> None:
        if self.first_audio is None:
            self.first_audio = time.perf_counter() - self.start
        self.samples += samples

    def done(self, rate: int = PCM_RATE) -> dict:
        self.total = time.perf_counter() - self.start
        seconds = self.samples / rate
        return {
            "ttft": self.first_text,
            "ttfa": self.first_audio,
            "latency": self.total,
            "audio_seconds": seconds,
            "rtf": self.total / seconds if seconds > 0 else None,
        }


def describe_error(error: BaseException) -> str:
    """One line for a failed request: the HTTP status and the server's message, or the connection problem."""
    import openai

    if isinstance(error, openai.APIStatusError):
        message = error.message if isinstance(error.message, str) else str(error)
        return f"HTTP {error.status_code}: {message}"[:300]
    if isinstance(error, openai.APITimeoutError):
        return "timed out"
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        return f"cannot connect to the server ({type(cause).__name__ if cause else 'connection error'})"
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}"[:300]


async def stream_request(client, model: str, prompt: str, voice: str, max_tokens: int) -> dict:
    """One streamed chat completion with text + `pcm16` audio; the `StreamTimer` figures of it."""
    timer = StreamTimer()
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        modalities=["text", "audio"],
        audio={"voice": voice, "format": "pcm16"},
        stream=True,
        temperature=0,
        max_tokens=max_tokens,
    )
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            timer.text()
        audio = getattr(delta, "audio", None)
        data = audio.get("data") if isinstance(audio, dict) else getattr(audio, "data", None)
        if data:
            timer.audio(len(base64.b64decode(data)) // 2)
        transcript = audio.get("transcript") if isinstance(audio, dict) else getattr(audio, "transcript", None)
        if transcript:
            timer.text()
    return timer.done()


def summarize_level(concurrency: int, results: list[dict], errors: list[str], wall: float) -> dict:
    """The figures of one concurrency level (see the module docstring)."""
    ok = [r for r in results if r["ttfa"] is not None]
    silent = len(results) - len(ok)
    messages = errors + ["reply without audio"] * silent
    speech = sum(r["audio_seconds"] for r in ok)
    row = {"concurrency": concurrency, "requests": len(results) + len(errors), "ok": len(ok), "errors": len(messages)}
    for key in ("ttft", "ttfa", "latency"):
        row |= {f"{key}_{k}": v for k, v in percentiles([r[key] for r in ok]).items()}
    rtfs = [r["rtf"] for r in ok if r["rtf"] is not None]
    row["rtf_mean"] = float(np.mean(rtfs)) if rtfs else float("nan")
    row |= {f"rtf_{k}": v for k, v in percentiles(rtfs).items()}
    row["throughput"] = speech / wall if wall > 0 else float("nan")
    row["requests_per_s"] = len(ok) / wall if wall > 0 else float("nan")
    row["audio_seconds"], row["wall_seconds"] = speech, wall
    row["error_messages"] = sorted(set(messages))[:5]
    return row


async def run_level(
    client,
    model: str,
    concurrency: int,
    requests: int,
    prompts: list[str],
    voice: str = "Chelsie",
    max_tokens: int = 64,
    timeout: float = 600.0,
    level_timeout: float = 3600.0,
) -> dict:
    """`requests` streamed requests from `concurrency` workers; each request bounded by `timeout` seconds."""
    pending = list(range(requests))
    results, errors = [], []
    deadline = time.perf_counter() + level_timeout

    async def worker():
        while pending and time.perf_counter() < deadline:
            index = pending.pop(0)
            prompt = prompts[index % len(prompts)]
            try:
                request = stream_request(client, model, prompt, voice, max_tokens)
                results.append(await asyncio.wait_for(request, timeout))
            except Exception as error:  # noqa: BLE001 - every failure is counted and named in the report
                errors.append(describe_error(error))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    errors += ["not sent: the level's time ran out"] * len(pending)
    return summarize_level(concurrency, results, errors, time.perf_counter() - start)


DEFAULT_PROMPTS = [
    "Tell me about the weather today.",
    "What is a good name for a cat?",
    "Describe a quiet morning by the sea.",
    "How do I make a cup of tea?",
]


async def benchmark(
    url: str,
    levels: list[int],
    requests: int,
    model: str | None = None,
    api_key: str = "EMPTY",
    prompts: list[str] | None = None,
    voice: str = "Chelsie",
    max_tokens: int = 64,
    timeout: float = 600.0,
    level_timeout: float = 3600.0,
    warmup: int = 1,
) -> dict:
    """Every level in turn (after `warmup` unmeasured requests). Returns `{"url", "model", "levels": [rows], "error"}`;
    `error` is set (and `levels` empty) when the server cannot be reached or names no model."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key=api_key, timeout=timeout, max_retries=0)
    report = {"url": url, "model": model, "voice": voice, "max_tokens": max_tokens, "requests": requests}
    try:
        if model is None:
            try:
                listed = [m.id async for m in client.models.list()]
            except Exception as error:  # noqa: BLE001 - reported
                report |= {"levels": [], "error": f"listing the models failed: {describe_error(error)}"}
                return report
            if not listed:
                report |= {"levels": [], "error": "the server lists no model (give --model)"}
                return report
            report["model"] = model = listed[0]
        prompts = prompts or DEFAULT_PROMPTS
        if warmup:
            await run_level(client, model, 1, warmup, prompts, voice, max_tokens, timeout, level_timeout)
        report["levels"] = [
            await run_level(client, model, level, requests, prompts, voice, max_tokens, timeout, level_timeout)
            for level in levels
        ]
        failed = [row for row in report["levels"] if row["ok"] == 0]
        if len(failed) == len(levels):
            report["error"] = "every request failed: " + "; ".join(failed[0]["error_messages"])
    finally:
        await client.close()
    return report


def bench_markdown(report: dict) -> str:
    """The levels as a markdown table (seconds), then errors by level and the run's settings."""
    from .report import markdown_table

    headers = ["clients", "ok/sent", "TTFT p50", "TTFA p50", "TTFA p90", "TTFA p99", "latency p50", "latency p99"]
    headers += ["RTF mean", "speech s / wall s", "req/s"]
    rows = [
        [
            r["concurrency"], f"{r['ok']}/{r['requests']}", r["ttft_p50"], r["ttfa_p50"], r["ttfa_p90"],
            r["ttfa_p99"], r["latency_p50"], r["latency_p99"], r["rtf_mean"], r["throughput"], r["requests_per_s"],
        ]
        for r in report.get("levels", [])
    ]  # fmt: skip
    text = [f"`bench serve` of model `{report.get('model')}`, {report['requests']} requests per level, "]
    text[0] += f"max_tokens {report['max_tokens']}, voice {report['voice']} (times in seconds)"
    text += ["", markdown_table(headers, rows)]
    for r in report.get("levels", []):
        if r["error_messages"]:
            text.append(f"- errors at {r['concurrency']} clients ({r['errors']}): " + "; ".join(r["error_messages"]))
    if report.get("error"):
        text.append(f"\nError: {report['error']}")
    return "\n".join(text) + "\n"


def bench_figure(report: dict, path) -> object | None:
    """Latency (TTFT/TTFA p50, TTFA p90/p99) and throughput vs concurrency; None without matplotlib or levels."""
    from .report import pyplot

    plt = pyplot()
    levels = [r for r in report.get("levels", []) if r["ok"]]
    if plt is None or not levels:
        return None
    x = [r["concurrency"] for r in levels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    for key, style in (("ttft_p50", "o--"), ("ttfa_p50", "o-"), ("ttfa_p90", "s-"), ("ttfa_p99", "^:")):
        left.plot(x, [r[key] for r in levels], style, label=key.replace("_", " ").upper().replace(" P", " p"))
    left.set(title="latency vs concurrency", xlabel="concurrent clients", ylabel="seconds", xscale="log", xticks=x)
    left.set_xticklabels([str(v) for v in x])
    left.minorticks_off()
    left.legend(fontsize=7)
    right.plot(x, [r["throughput"] for r in levels], "o-", color="tab:green")
    right.set(title="throughput", xlabel="concurrent clients", ylabel="speech s / wall s", xscale="log", xticks=x)
    right.set_xticklabels([str(v) for v in x])
    right.minorticks_off()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


BENCH_SECTION = "Serving latency (omni-hf bench serve)"


def bench_card_results(report: dict) -> dict:
    """The figures a Hub card shows (`omni-hf card model ... --results bench-card.json`), per concurrency level."""
    section = {}
    for row in report.get("levels", []):
        if row["ok"]:
            n = row["concurrency"]
            section[f"{n} clients: TTFA p50 (s)"] = round(row["ttfa_p50"], 3)
            section[f"{n} clients: TTFA p90 (s)"] = round(row["ttfa_p90"], 3)
            section[f"{n} clients: RTF"] = round(row["rtf_mean"], 3)
            section[f"{n} clients: speech s per wall s"] = round(row["throughput"], 3)
    return {BENCH_SECTION: section, "source": "omni-hf bench serve", "notes": f"model {report.get('model')}"}


def write_bench_report(folder, report: dict) -> dict:
    """`bench.json`, `bench.md`, `bench-card.json` (for `omni-hf card --results`) and (with matplotlib) `bench.png`
    in `folder`; returns their paths."""
    from pathlib import Path

    from .report import write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "bench.json", "markdown": folder / "bench.md", "card": folder / "bench-card.json"}
    write_json(report, paths["json"])
    write_json(bench_card_results(report), paths["card"])
    paths["markdown"].write_text(bench_markdown(report))
    if bench_figure(report, folder / "bench.png") is not None:
        paths["figure"] = folder / "bench.png"
    return paths


__all__ = [
    "BENCH_SECTION",
    "StreamTimer",
    "bench_card_results",
    "bench_figure",
    "bench_markdown",
    "benchmark",
    "describe_error",
    "percentiles",
    "run_level",
    "stream_request",
    "summarize_level",
    "write_bench_report",
]
