"""Time and memory of the issue-28 media bombs, each in its own process (killed above --cap-gb or --timeout).

    python benchmarks/media_budgets.py            # this checkout
    python benchmarks/media_budgets.py --src OLD  # another checkout's src/ (e.g. `git archive <commit> src`)

Each case prints: wall seconds, peak RSS above the process's RSS just before the case, and how it ended.
"""

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ("wav_50mhz", "png_bomb_http", "png_bomb_realtime", "flac_hour_http", "video_10min_http", "video_10min_cli",
         "text_20mb")  # fmt: skip

CHILD = r"""
import base64, io, json, os, struct, sys, tempfile, time, zlib
import numpy as np, soundfile as sf

case = sys.argv[1]

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def wav_at(rate, samples=16000):
    data = bytes(2 * samples)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body

def png_bomb(side=12000):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = bytes(1 + -(-side // 8))
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * side, 9)) + chunk(b"IEND", b"")

def url(mime, data):
    return f"data:{mime};base64," + base64.b64encode(data).decode()

from omni_hf.serving.protocol import ChatCompletionRequest, ConversationBuilder, ServerLimits
from omni_hf.serving import realtime_events
from omni_hf.processing import load_audio

def http(content, process=None):
    # the server's validation and ConversationBuilder, then `process(conversation)` while its files exist
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": content}]})
    builder = ConversationBuilder(ServerLimits())
    try:
        from omni_hf.serving.protocol import check_request
        check_request(request, [], [], builder.limits)
        conversation = builder(request.messages)
        return process(conversation) if process else conversation
    finally:
        builder.close()

def process(conversation):
    return processor.apply_chat_template(conversation, tokenize=True, return_dict=True)

tmp = tempfile.mkdtemp()
if case == "wav_50mhz":
    path = os.path.join(tmp, "fast.wav")
    open(path, "wb").write(wav_at(50_000_001))
    run = lambda: load_audio(path)
elif case == "png_bomb_http":
    bomb = png_bomb()
    run = lambda: http([{"type": "image_url", "image_url": {"url": url("image/png", bomb)}}])
elif case == "png_bomb_realtime":
    bomb = png_bomb()
    item = {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
            "content": [{"type": "input_image", "image_url": url("image/png", bomb)}]}}
    run = lambda: realtime_events.parse_user_item(item)
elif case == "flac_hour_http":
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(3600 * 16000, np.int16), 16000, format="FLAC")
    flac = base64.b64encode(buffer.getvalue()).decode()
    del buffer
    run = lambda: http([{"type": "input_audio", "input_audio": {"data": flac, "format": "flac"}}])
elif case == "video_10min_http":
    from omni_hf.testing.media import write_video
    from omni_hf.testing.tokenizer import build_tiny_processor
    path = write_video(os.path.join(tmp, "long.mp4"), duration=600, fps=10, width=320, height=240, with_audio=False)
    processor = build_tiny_processor()
    video = url("video/mp4", open(path, "rb").read())
    run = lambda: http([{"type": "video_url", "video_url": {"url": video}}], process)
elif case == "video_10min_cli":  # the processor alone, as the CLI and the Space call it
    from omni_hf.testing.media import write_video
    from omni_hf.testing.tokenizer import build_tiny_processor
    path = write_video(os.path.join(tmp, "long.mp4"), duration=600, fps=10, width=320, height=240, with_audio=False)
    processor = build_tiny_processor()
    run = lambda: processor(text="<|VIDEO|>", videos=[path])
elif case == "text_20mb":
    from omni_hf.testing.tokenizer import build_tiny_processor
    processor = build_tiny_processor()
    text = "ab " * (20 * 2**20 // 3)
    run = lambda: http(text, process)
base = rss()
print(json.dumps({"ready": True, "base_rss": base}), flush=True)
start = time.perf_counter()
try:
    run()
    outcome = "accepted"
except Exception as error:
    outcome = f"{type(error).__name__}: {str(error)[:160]}"
print(json.dumps({"seconds": round(time.perf_counter() - start, 2), "outcome": outcome}), flush=True)
"""


def measure(case: str, src: str, cap: float, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    child = subprocess.Popen([sys.executable, "-c", CHILD, case], stdout=subprocess.PIPE, text=True, env=env)
    base = json.loads(child.stdout.readline())["base_rss"]
    page = os.sysconf("SC_PAGE_SIZE")
    peak, start, ended = base, time.monotonic(), None
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/statm") as f:
                peak = max(peak, int(f.read().split()[1]) * page)
        except OSError:
            break
        if peak - base > cap * 2**30:
            ended = f"killed above {cap:g} GB"
        elif time.monotonic() - start > timeout:
            ended = f"killed after {timeout:g} s"
        if ended:
            child.kill()
            break
        time.sleep(0.02)
    child.wait()
    result = {"case": case, "peak_gb": round((peak - base) / 2**30, 3)}
    if ended:
        return result | {"seconds": round(time.monotonic() - start, 1), "outcome": ended}
    return result | json.loads(child.stdout.readline())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "src"))
    parser.add_argument("--cap-gb", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    for case in args.cases:
        print(json.dumps(measure(case, args.src, args.cap_gb, args.timeout)), flush=True)


if __name__ == "__main__":
    main()
