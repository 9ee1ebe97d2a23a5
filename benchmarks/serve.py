"""Serving benchmark: the same spoken requests sent by 1 (one after another), 2, 4 and 8 concurrent `openai` clients.

`omni-hf serve`'s app runs in this process (uvicorn on 127.0.0.1, its own thread) with the small random config of
`speech.py` (thinker 512 x 8 with the real 152k vocabulary, talker 384 x 6, DiT 256 x 6, BigVGAN 256 channels) on
`--threads` torch threads. Replies have a fixed length (`--tokens` text tokens, `--codes` speech codes: the Thinker's
end token and the Talker's end codes are disabled), so every level does the same work. Per level: time to first
audio packet (p50, p90, from sending the request), audio RTF (request time / its audio seconds, mean), throughput
(seconds of speech per wall second) and errors.

    python benchmarks/serve.py                         # 8 requests of 2 s speech per level
    python benchmarks/serve.py --requests 8 --codes 50 --tokens 10 --levels 1 8
    python benchmarks/serve.py --student-steps 2     # token2wav is a 2-step student (speed only: untrained copy)
"""

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import torch

from speech import build_checkpoint


def start_server(path: Path, args):
    import socket

    import uvicorn

    from omni_hf.serving import ServerLimits, create_app
    from omni_hf.serving.server import load_for_serving

    model, processor = load_for_serving(str(path))
    if args.student_steps:  # a few-step token2wav student (an untrained copy of the teacher's DiT: speed only)
        import copy

        from omni_hf.training.token2wav_distill import student_pipeline

        teacher = model.token2wav.pipeline
        model.token2wav = student_pipeline(teacher, copy.deepcopy(teacher.dit), args.student_steps)
    model.thinker.generation_config.eos_token_id = None  # fixed reply length: no early end
    config = model.talker.generation_config
    config.suppress_tokens = list(config.suppress_tokens or []) + list(model.talker.config.codec_eos_token_ids)
    limits = ServerLimits(max_tokens=args.tokens, talker_max_new_tokens=args.codes, timeout=3600)
    app = create_app(model, processor, model_id="small", limits=limits, max_active=max(args.levels))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1", app


async def run_level(url: str, concurrency: int, args) -> dict:
    """One level, timed by `omni-hf bench serve`'s own code (`omni_hf.evaluation.bench_serve.run_level`)."""
    import openai

    from omni_hf.evaluation.bench_serve import run_level as bench_level

    client = openai.AsyncOpenAI(base_url=url, api_key="unused", timeout=3600, max_retries=0)
    prompts = [f"Question number {i}: tell me about the weather." for i in range(args.requests)]
    try:
        row = await bench_level(client, "small", concurrency, args.requests, prompts, "Chelsie", args.tokens, 3600)
    finally:
        await client.close()
    return row | {"rtf": row["rtf_mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8, help="requests per level")
    parser.add_argument("--tokens", type=int, default=16, help="text tokens per reply")
    parser.add_argument("--codes", type=int, default=100, help="speech codes per reply (50 = 1 s)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help="a model directory (default: build the small random config)")
    parser.add_argument("--student-steps", type=int, default=0, help="serve a token2wav student of this many steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from omni_hf.testing.tokenizer import build_tiny_processor

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else Path(tmp) / "small"
        if not args.model:
            path.mkdir()
            build_checkpoint(path)
            build_tiny_processor().save_pretrained(path)
        server, url, app = start_server(path, args)
        asyncio.run(run_level(url, 1, argparse.Namespace(**{**vars(args), "requests": 1})))  # warm-up
        rows = [asyncio.run(run_level(url, level, args)) for level in args.levels]
        engine = app.state.omni.engine
        server.should_exit = True
    print(
        f"\nServing benchmark: small config, {args.threads} torch threads, {args.requests} requests per level of "
        f"{args.tokens} tokens + {args.codes} codes ({args.codes / 50:.1f} s of speech)"
    )
    print("| clients | TTFA p50 | TTFA p90 | audio RTF | throughput (speech s / wall s) | errors |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        name = "1 (one after another)" if row["concurrency"] == 1 else str(row["concurrency"])
        print(
            f"| {name} | {row['ttfa_p50']:.2f} s | {row['ttfa_p90']:.2f} s | {row['rtf']:.2f} | "
            f"{row['throughput']:.3f} | {row['errors']} |"
        )
    by_level = {row["concurrency"]: row for row in rows}
    if 1 in by_level and max(by_level) > 1:
        top, one = by_level[max(by_level)], by_level[1]
        print(
            f"\nthroughput x{top['throughput'] / one['throughput']:.2f} at {top['concurrency']} clients vs one after "
            f"another (target >= 3); p50 TTFA x{top['ttfa_p50'] / one['ttfa_p50']:.2f} (target <= 4)"
        )
    print(f"recent batch sizes: { {k: max(v, default=0) for k, v in engine.batch_sizes.items()} }")
    for row in rows:
        if row["error_messages"]:
            print(f"errors at {row['concurrency']}: {row['error_messages']}")


if __name__ == "__main__":
    main()
