"""Qwen2.5-Omni chat Space: text, microphone, image and video in; text and speech streamed out (omni_hf `stream()`).

Environment:
    OMNI_MODEL            model folder or Hub repo (default Qwen/Qwen2.5-Omni-3B)
    OMNI_VOICES           comma-separated LoRA voice adapters (folders or repos) to offer besides the base voice
    OMNI_MAX_NEW_TOKENS   reply length in text tokens (default 256)
    OMNI_MAX_SPEECH_CODES reply length in speech codes, 50 per second (default 1500)
    OMNI_TOKEN2WAV        another token2wav pipeline folder or repo, e.g. a few-step student (recipes/token2wav_distill.py)
    OMNI_SEED             seed every chat reply (the same message gives the same reply, whatever else runs)
On Spaces (`SPACE_ID` set) uploads are capped in size and duration and one reply is generated at a time.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from omni_hf import OmniForConditionalGeneration, OmniProcessor
from omni_hf.evaluation.bench_serve import StreamTimer
from omni_hf.omni import AudioChunk, StreamStats, TextDelta
from omni_hf.processing import AUDIO_EXTENSIONS, TOKEN2WAV_SAMPLING_RATE, VIDEO_EXTENSIONS
from omni_hf.processing.audio import check_sampling_rate, probe_audio
from omni_hf.processing.chat_utils import DEFAULT_SYSTEM_PROMPT
from omni_hf.processing.encoding import wav_bytes
from omni_hf.processing.media import check_decode_pixels
from omni_hf.serving.scheduler import BatchScheduler

sys.path.insert(0, str(Path(__file__).parent))  # the Space's own live.py
from live import build_live_tab, serve  # noqa: E402

logger = logging.getLogger("omni_chat")

ON_SPACES = bool(os.environ.get("SPACE_ID"))
MODEL_ID = os.environ.get("OMNI_MODEL", "Qwen/Qwen2.5-Omni-3B")
MAX_NEW_TOKENS = int(os.environ.get("OMNI_MAX_NEW_TOKENS", "256"))
MAX_SPEECH_CODES = int(os.environ.get("OMNI_MAX_SPEECH_CODES", "1500"))
SEED = int(os.environ["OMNI_SEED"]) if os.environ.get("OMNI_SEED") else None
NO_VOICE = "base voice"
IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}
AUDIO_TYPES = set(AUDIO_EXTENSIONS)  # the media layer's own list (.m4a / .webm recordings included)
VIDEO_TYPES = set(VIDEO_EXTENSIONS) - AUDIO_TYPES - IMAGE_TYPES
PLACEHOLDER = "Type a message, record audio or attach an image, audio or video"
SYSTEM = DEFAULT_SYSTEM_PROMPT  # the official prompt: the model only speaks with it


@dataclass(frozen=True)
class Limits:
    max_file_mb: int
    max_audio_seconds: float
    max_video_seconds: float
    max_files: int
    max_text_chars: int
    concurrency: int | None


LIMITS = (
    Limits(max_file_mb=20, max_audio_seconds=30, max_video_seconds=20, max_files=3, max_text_chars=2000, concurrency=1)
    if ON_SPACES
    else Limits(
        max_file_mb=500, max_audio_seconds=600, max_video_seconds=300, max_files=8, max_text_chars=20000, concurrency=2
    )
)


def load_model():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    token2wav = os.environ.get("OMNI_TOKEN2WAV")
    extra = {"token2wav": token2wav} if token2wav else {}
    model = OmniForConditionalGeneration.from_pretrained(MODEL_ID, dtype=dtype, **extra).to(device).eval()
    processor = OmniProcessor.from_pretrained(MODEL_ID)
    voices = [model.voice_adapters.load(v.strip()) for v in os.environ.get("OMNI_VOICES", "").split(",") if v.strip()]
    return model, processor, voices


def media_seconds(path: str) -> float:
    """Duration of an audio or video file from its header (nothing decoded); its sample rate is checked too."""
    seconds, rate = probe_audio(path)
    if rate is not None:
        check_sampling_rate(rate, Path(path).name)
    return seconds


def image_pixels(path: str) -> int | None:
    """Pixels of an image from its header (nothing decoded), refused above what the processor decodes at all; None
    when the header is unreadable (the processor names the corrupt file when the turn runs)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            height, width = image.height, image.width
    except Exception:
        return None
    check_decode_pixels(height, width, Path(path).name)
    return height * width


def user_content(message: dict) -> list[dict]:
    """The user's turn as omni_hf chat content, after checking every upload; gr.Error names what is wrong."""
    text = (message or {}).get("text", "").strip()
    files = (message or {}).get("files", [])
    if not text and not files:
        raise gr.Error("Type a message, record audio or attach an image, audio or video file.")
    if len(text) > LIMITS.max_text_chars:
        raise gr.Error(f"The message has {len(text)} characters; at most {LIMITS.max_text_chars} are accepted.")
    if len(files) > LIMITS.max_files:
        raise gr.Error(f"{len(files)} files attached; at most {LIMITS.max_files} per message.")
    content = []
    for item in files:
        path = item if isinstance(item, str) else item.get("path")
        name, suffix = Path(path).name, Path(path).suffix.lower()
        size_mb = Path(path).stat().st_size / 2**20
        if size_mb > LIMITS.max_file_mb:
            raise gr.Error(f"{name} is {size_mb:.1f} MB; files up to {LIMITS.max_file_mb} MB are accepted.")
        if suffix in IMAGE_TYPES:
            try:
                image_pixels(path)
            except ValueError as error:
                raise gr.Error(f"{name} could not be used as an image: {error}") from None
            content.append({"type": "image", "image": path})
            continue
        if suffix not in AUDIO_TYPES | VIDEO_TYPES:
            kinds = ", ".join(sorted(IMAGE_TYPES | AUDIO_TYPES | VIDEO_TYPES))
            raise gr.Error(f"{name}: unsupported file type {suffix or '(none)'}; expected one of {kinds}.")
        kind, limit = (
            ("audio", LIMITS.max_audio_seconds) if suffix in AUDIO_TYPES else ("video", LIMITS.max_video_seconds)
        )
        try:
            seconds = media_seconds(path)
        except Exception as error:
            raise gr.Error(f"{name} could not be read as {kind}: {error}") from None
        if seconds > limit:
            raise gr.Error(f"{name} lasts {seconds:.0f} s; {kind} up to {limit:.0f} s is accepted.")
        content.append({"type": kind, kind: path})
    if text:
        content.append({"type": "text", "text": text})
    return content


def validate_message(message, chat, turns, speaker, voice):
    """Checks the upload before the reply starts; only the input box is marked when it fails."""
    try:
        user_content(message)
    except gr.Error as error:
        return gr.validate(False, error.message), *(gr.validate(True, "") for _ in range(4))
    return tuple(gr.validate(True, "") for _ in range(5))


def failure_message(error: Exception) -> str:
    """What the user sees when a reply fails: omni_hf's own message for bad input, a pointer to the logs otherwise."""
    if isinstance(error, (ValueError, OSError)):  # omni_hf's input errors name the input and the fix
        return str(error)
    return f"The reply failed ({type(error).__name__}); nothing was added to the chat. See the Space logs."


def build_demo(
    model,
    processor,
    voices: list[str],
    output_dir: str | os.PathLike | None = None,
    engine: BatchScheduler | None = None,
) -> gr.Blocks:
    """The chat UI. Spoken replies are written under `output_dir` (the only folder of files the app serves). Replies
    run on `engine`, the one engine that also serves the live tab's `/v1/realtime` (made here when not given)."""
    engine = engine or BatchScheduler(model.eval(), processor)
    speakers = model.speakers.names() if model.has_talker else []
    output_dir = Path(output_dir or tempfile.mkdtemp(prefix="omni_chat_"))

    def busy_box():  # a submit while busy is refused visibly (the box is locked), not dropped silently
        return gr.MultimodalTextbox(interactive=False, placeholder="Replying… press Stop to interrupt")

    def free_box(value=None):
        return gr.MultimodalTextbox(value=value, interactive=True, placeholder=PLACEHOLDER)

    def respond(message, chat, turns, speaker, voice):
        started = time.perf_counter()
        timer = StreamTimer()  # the evaluation harness's timing (`omni-hf bench serve` measures the same figures)
        content = user_content(message)
        before_chat, before_turns = chat, turns
        # The state follows the reply as it grows, so a stopped reply keeps what was shown; a failed one is undone.
        turns = [*turns, {"role": "user", "content": content}]
        chat = [*chat, *display(content), {"role": "assistant", "content": ""}]
        yield busy_box(), chat, turns, gr.skip(), None, "Thinking…"
        try:
            inputs = processor.apply_chat_template(
                [{"role": "system", "content": SYSTEM}, *turns],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            ).to(model.device)  # special-token strings typed by the user stay plain text (the processor's default)
            speak = model.has_talker and bool(speaker)
            reply, pieces, latency = "", [], "Generating…"
            kwargs = dict(
                speaker=speaker or "Chelsie",
                return_audio=speak,
                voice_adapter=None if voice in (None, NO_VOICE) else voice,
                tokenizer=processor,
                thinker_max_new_tokens=MAX_NEW_TOKENS,
                talker_max_new_tokens=MAX_SPEECH_CODES,
            )
            for event in engine.stream(lambda: model.stream(**inputs, **kwargs), seed=SEED):
                if isinstance(event, TextDelta) and event.text:
                    timer.text()
                    reply += event.text
                    chat[-1] = {"role": "assistant", "content": reply}
                    replied = [*turns, {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
                    yield gr.skip(), chat, replied, gr.skip(), gr.skip(), gr.skip()
                elif isinstance(event, AudioChunk):
                    timer.audio(event.audio.size)
                    if not pieces:
                        latency = f"First audio after {time.perf_counter() - started:.2f} s…"
                    pieces.append(event.audio)
                    yield gr.skip(), chat, gr.skip(), (event.sampling_rate, event.audio), gr.skip(), latency
                elif isinstance(event, StreamStats):
                    latency = latency_markdown(timer.done())
        except Exception as error:  # undo the turn (a broken upload must not break every later message), keep the text
            logger.exception("Reply failed")
            yield free_box(message), before_chat, before_turns, gr.skip(), None, ""
            raise gr.Error(failure_message(error)) from None
        turns = [*turns, {"role": "assistant", "content": [{"type": "text", "text": reply}]}]
        full = save_wav(np.concatenate(pieces), output_dir) if pieces else None
        yield free_box(), chat, turns, gr.skip(), full, latency

    with gr.Blocks(title="Qwen2.5-Omni chat (omni_hf)") as demo:
        gr.Markdown(
            f"# Qwen2.5-Omni chat\nModel `{MODEL_ID}` via [omni_hf](https://github.com/omni-hf/omni_hf): ask with "
            "text, your voice, an image or a video; the answer is written and spoken as it is generated."
            + (
                f"\n\nOn this Space: files up to {LIMITS.max_file_mb} MB, audio up to {LIMITS.max_audio_seconds:.0f} s, "
                f"video up to {LIMITS.max_video_seconds:.0f} s, one reply at a time."
                if ON_SPACES
                else ""
            )
        )
        turns = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(elem_id="chatbot", height=420, label="Chat")
                box = gr.MultimodalTextbox(
                    elem_id="chat-input",
                    file_types=["image", "audio", "video"],
                    file_count="multiple",
                    sources=["upload", "microphone"],
                    placeholder=PLACEHOLDER,
                    show_label=False,
                )
            with gr.Column(scale=1):
                speaker = gr.Dropdown(speakers, value=speakers[0] if speakers else None, label="Speaker")
                voice = gr.Dropdown([NO_VOICE, *voices], value=NO_VOICE, label="Voice adapter")
                stream_out = gr.Audio(label="Spoken reply (live)", streaming=True, autoplay=True, elem_id="live-audio")
                full_out = gr.Audio(label="Spoken reply", type="filepath", elem_id="reply-audio", interactive=False)
                latency = gr.Markdown(elem_id="latency")
                with gr.Row():
                    stop = gr.Button("Stop", elem_id="stop", variant="stop")
                    clear = gr.Button("New chat", elem_id="new-chat")
        reply = box.submit(
            respond,
            [box, chatbot, turns, speaker, voice],
            [box, chatbot, turns, stream_out, full_out, latency],
            api_name="respond",
            concurrency_limit=LIMITS.concurrency,
            validator=validate_message,
        )
        # Stop keeps the reply so far (the state followed it); New chat drops everything. Both free the input box.
        stop.click(free_box, None, [box], cancels=[reply], api_name=False, queue=False)
        clear.click(
            lambda: ([], [], None, "", free_box()),
            None,
            [chatbot, turns, full_out, latency, box],
            cancels=[reply],
            api_name=False,
            queue=False,
        )
        if model.has_talker:
            build_live_tab(speakers)
    return demo


def display(content: list[dict]) -> list[dict]:
    """The user's turn as Chatbot messages (files shown inline)."""
    shown = [{"role": "user", "content": {"path": c[c["type"]]}} for c in content if c["type"] != "text"]
    return shown + [{"role": "user", "content": c["text"]} for c in content if c["type"] == "text"]


def latency_markdown(timing: dict) -> str:
    """The latency panel: `StreamTimer.done()`'s figures, from the moment the message was sent."""
    first = "n/a" if timing["ttfa"] is None else f"{timing['ttfa']:.2f} s"
    text = "n/a" if timing["ttft"] is None else f"{timing['ttft']:.2f} s"
    rtf = timing["rtf"]
    return (
        f"**First audio: {first}** · first text {text} · {timing['audio_seconds']:.1f} s of speech in "
        f"{timing['latency']:.1f} s" + (f" · RTF {rtf:.2f}" if rtf is not None else "")
    )


def save_wav(audio: np.ndarray, output_dir: Path) -> str:
    """Write a spoken reply `(samples,)` at 24 kHz into its own subfolder of `output_dir`."""
    path = Path(tempfile.mkdtemp(prefix="reply_", dir=output_dir)) / "reply.wav"
    path.write_bytes(wav_bytes(audio, TOKEN2WAV_SAMPLING_RATE))  # omni_hf's one pcm16 convention
    return str(path)


if __name__ == "__main__":
    model, processor, voices = load_model()
    replies = tempfile.mkdtemp(prefix="omni_chat_replies_")  # the app's own folder: the only files it serves
    engine = BatchScheduler(model.eval(), processor)  # one engine for the chat tab and the live tab
    demo = build_demo(model, processor, voices, output_dir=replies, engine=engine)
    demo = demo.queue(max_size=16 if ON_SPACES else None)
    live_kwargs = {"thinker_max_new_tokens": MAX_NEW_TOKENS, "talker_max_new_tokens": MAX_SPEECH_CODES}
    # the chat UI and the live voice tab's `/v1/realtime` WebSocket, on one server
    serve(demo, model, processor, generation_kwargs=live_kwargs, max_file_size=f"{LIMITS.max_file_mb}mb",
          allowed_paths=[replies], engine=engine)  # fmt: skip
