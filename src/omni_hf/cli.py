"""`omni-hf` command line.

omni-hf chat --model Qwen/Qwen2.5-Omni-7B --text "What is said here?" --audio question.wav
omni-hf chat --model ./tiny-omni --text "Describe" --image cat.png --video clip.mp4 --use-audio-in-video
"""

import argparse
import sys

from transformers.utils import logging

logger = logging.get_logger(__name__)


def _chat_messages(args) -> list[dict]:
    content = []
    for path in args.audio or []:
        content.append({"type": "audio", "audio": path})
    for path in args.image or []:
        content.append({"type": "image", "image": path})
    for path in args.video or []:
        content.append({"type": "video", "video": path})
    if args.text:
        content.append({"type": "text", "text": args.text})
    if not content:
        raise SystemExit("omni-hf chat: give at least one of --text, --audio, --image, --video")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    return messages + [{"role": "user", "content": content}]


def chat(args) -> str:
    """Answer one user turn with the Thinker and return the reply text (also printed)."""
    import torch

    from .models import OmniThinkerForConditionalGeneration
    from .processing import OmniProcessor

    processor = OmniProcessor.from_pretrained(args.model)
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        args.dtype
    ]
    model = OmniThinkerForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(args.device).eval()
    inputs = processor.apply_chat_template(
        _chat_messages(args),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        use_audio_in_video=args.use_audio_in_video,
    ).to(args.device)
    config = model.config
    media_ids = [
        config.audio_token_id,
        config.image_token_id,
        config.video_token_id,
        config.audio_start_token_id,
        config.audio_end_token_id,
        config.vision_start_token_id,
        config.vision_end_token_id,
    ]
    generation = dict(max_new_tokens=args.max_new_tokens, suppress_tokens=media_ids)
    if args.temperature > 0:
        generation.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        generation.update(do_sample=False)
    with torch.inference_mode():
        output = model.generate(**inputs, **generation)
    reply = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    print(reply)
    return reply


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omni-hf", description="Qwen2.5-Omni with omni_hf")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("chat", help="answer one multimodal user turn (text reply)")
    c.add_argument("--model", required=True, help="local directory or Hub repo (ours or an official Qwen2.5-Omni)")
    c.add_argument("--text", help="the user's text")
    c.add_argument("--audio", action="append", help="audio file (wav/flac/mp3/ogg); repeatable")
    c.add_argument("--image", action="append", help="image file; repeatable")
    c.add_argument("--video", action="append", help="video file; repeatable")
    c.add_argument("--use-audio-in-video", action="store_true", help="also listen to the videos' audio tracks")
    c.add_argument("--system", help="system prompt (default: the official Qwen2.5-Omni one)")
    c.add_argument("--max-new-tokens", type=int, default=64)
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    c.add_argument("--top-p", type=float, default=0.8)
    c.add_argument("--device", default="cpu")
    c.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    c.set_defaults(func=chat)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"omni-hf {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
