"""`omni-hf serve MODEL`: load a model and run the OpenAI-compatible app with uvicorn (127.0.0.1 unless told)."""

import argparse
import os

import torch
from transformers.utils import logging

from .protocol import ServerLimits

logger = logging.get_logger(__name__)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model directory or Hub repo (omni_hf layout or official checkpoint)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-id", help="the model name clients send and /v1/models lists (default: MODEL)")
    parser.add_argument("--api-key", default=os.environ.get("OMNI_HF_API_KEY"), help="require this bearer key")
    parser.add_argument("--max-concurrent", type=int, default=8, help="replies generated at once; more get 429")
    parser.add_argument(
        "--max-realtime-sessions", type=int, default=16, help="/v1/realtime connections open at once; more get 429"
    )
    parser.add_argument("--body-timeout", type=float, default=30.0, help="seconds to receive a request body (408)")
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=3.0,
        help="on SIGTERM/Ctrl-C, seconds open replies and realtime sessions get to finish before they are cancelled",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a reply may take")
    parser.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens a request may ask")
    parser.add_argument("--max-speech-codes", type=int, default=4096, help="speech codes per reply (50 per second)")
    parser.add_argument("--max-body-mb", type=float, default=32.0, help="request body limit")
    parser.add_argument("--max-media", type=int, default=4, help="media parts per request")
    parser.add_argument("--max-audio-seconds", type=float, default=300.0, help="length limit of one audio input")
    parser.add_argument("--allow-media-dir", help="let requests name local files inside this folder")
    parser.add_argument(
        "--allowed-hosts",
        nargs="*",
        default=[],
        help="Host names the server answers to besides loopback and --host (checked without --api-key)",
    )
    parser.add_argument(
        "--cors-origins",
        nargs="*",
        default=[],
        help="browser origins (e.g. https://my-app.example) allowed to call the API; others get 403",
    )
    parser.add_argument("--voice-adapter", action="append", default=[], help="load a LoRA voice (folder or repo)")
    parser.add_argument(
        "--token2wav",
        help="another code-to-wave stage for every reply: a token2wav pipeline folder or repo (e.g. a few-step "
        "student from recipes/token2wav_distill.py)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, help="torch CPU threads")


def load_for_serving(model_path: str, device: str = "cpu", dtype: str = "auto", voice_adapters=(), token2wav=None):
    """The model (eval, on `device`, with `token2wav` as its code-to-wave stage if given) and its processor."""
    from ..omni import OmniForConditionalGeneration
    from ..processing import OmniProcessor

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    extra = {} if token2wav is None else {"token2wav": token2wav}
    model = OmniForConditionalGeneration.from_pretrained(model_path, dtype=torch_dtype, **extra).to(device).eval()
    for adapter in voice_adapters:
        model.voice_adapters.load(adapter)
    return model, OmniProcessor.from_pretrained(model_path)


def served_name(model: str) -> str:
    """The name clients see by default: a Hub repo id as given, a local folder by its own name (never its path)."""
    return os.path.basename(os.path.normpath(model)) if os.path.isdir(model) else model


def limits_from_args(args) -> ServerLimits:
    return ServerLimits(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_media_bytes=int(args.max_body_mb * 1024 * 1024),
        max_media_items=args.max_media,
        max_audio_seconds=args.max_audio_seconds,
        max_tokens=args.max_tokens,
        talker_max_new_tokens=args.max_speech_codes,
        timeout=args.timeout,
        allowed_media_dir=args.allow_media_dir,
    )


def serve(args) -> None:
    import uvicorn

    from .app import create_app

    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = load_for_serving(args.model, args.device, args.dtype, args.voice_adapter, args.token2wav)
    app = create_app(
        model,
        processor,
        model_id=args.model_id or served_name(args.model),
        limits=limits_from_args(args),
        api_key=args.api_key,
        max_active=args.max_concurrent,
        allowed_hosts=[args.host, *args.allowed_hosts],
        cors_origins=args.cors_origins,
        max_realtime_sessions=args.max_realtime_sessions,
        body_timeout=args.body_timeout,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        logger.warning(
            f"Serving on {args.host} without --api-key: anyone who can reach it can use the model (requests must "
            "name it by --host or one of --allowed-hosts in their Host header)"
        )
    # Open replies and realtime sessions are cancelled after --shutdown-timeout: SIGTERM stops the server in seconds.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=args.shutdown_timeout)


__all__ = ["add_serve_arguments", "limits_from_args", "load_for_serving", "serve", "served_name"]
