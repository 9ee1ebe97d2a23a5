"""`omni-hf` command line.

omni-hf chat --model Qwen/Qwen2.5-Omni-7B --text "What is said here?" --audio question.wav
omni-hf chat --model ./tiny-omni --text "Describe" --image cat.png --video clip.mp4 --use-audio-in-video
omni-hf chat --model Qwen/Qwen2.5-Omni-7B --audio question.wav --output reply.wav --stream
omni-hf card model ./tiny-omni --repo-id me/tiny-omni --results bench.json
omni-hf push thinker ./tiny-omni me/tiny-omni-thinker --results parity.json
omni-hf eval speech ./tiny-omni --texts texts.txt --out eval      # WER, speaker similarity, pauses (offline)
omni-hf bench serve http://127.0.0.1:8000 --concurrency 1 2 4 8 --requests 8
"""

import argparse
import os
import sys
from pathlib import Path

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


def _load_inputs(processor, args, device):
    return processor.apply_chat_template(
        _chat_messages(args),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        use_audio_in_video=args.use_audio_in_video,
        allow_special_tokens_in_text=args.allow_special_tokens,
    ).to(device)


def check_model_path(model: str, option: str = "--model") -> None:
    """A path-like model argument must be an existing folder (else it would be reported as a bad Hub repo id)."""
    if os.path.isdir(model):
        return
    if os.path.exists(model):
        raise ValueError(f"{option} {model}: not a folder (give the model's folder or a Hub repo id)")
    if model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1:
        raise FileNotFoundError(f"{option} {model}: no such local folder (and not a Hub repo id 'namespace/name')")


def check_device(device: str) -> None:
    """Refuse an unknown device or one this machine does not have, before any weights are loaded."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ValueError(f"--device {device}: not a device ({error})") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(kind, True):
        raise ValueError(f"--device {device}: this machine has no {kind.upper()} device (torch sees none); use cpu")


def check_chat_args(args) -> None:
    """Everything `chat` can check before loading weights or touching a file: inputs, model, device, output."""
    _chat_messages(args)
    from .processing.audio import MAX_AUDIO_SECONDS
    from .processing.media import check_media_header

    for option in ("audio", "image", "video"):
        for path in getattr(args, option) or []:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"--{option} {path}: no such file")
            try:  # budgets from the header (sample rate, seconds, pixels) before any weights are loaded
                check_media_header(path, option, max_audio_seconds=MAX_AUDIO_SECONDS)
            except ValueError as error:
                raise ValueError(f"--{option} {path}: {error}") from None
    check_model_path(args.model)
    check_device(args.device)
    if args.output:
        output = Path(args.output)
        if output.is_dir():
            raise IsADirectoryError(f"--output {output}: is a folder; give a .wav file name")
        if not output.parent.is_dir():
            raise FileNotFoundError(f"--output {output}: the folder {output.parent} does not exist")
        if not os.access(output.parent, os.W_OK):
            raise PermissionError(f"--output {output}: the folder {output.parent} is not writable")


def _text_generation_kwargs(args, config) -> dict:
    media_ids = [
        config.audio_token_id,
        config.image_token_id,
        config.video_token_id,
        config.audio_start_token_id,
        config.audio_end_token_id,
        config.vision_start_token_id,
        config.vision_end_token_id,
    ]
    kwargs = dict(max_new_tokens=args.max_new_tokens, suppress_tokens=media_ids)
    if args.temperature > 0:
        kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        kwargs.update(do_sample=False)
    return kwargs


def chat(args) -> str:
    """Answer one user turn; print the reply text and, with `--output`, write the spoken reply as a WAV."""
    import torch

    from .omni import OmniForConditionalGeneration
    from .processing import OmniProcessor
    from .thinker import OmniThinkerForConditionalGeneration

    check_chat_args(args)
    processor = OmniProcessor.from_pretrained(args.model)
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
        args.dtype
    ]
    if args.output or args.stream:
        model = OmniForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(args.device).eval()
        thinker = model.thinker
    else:
        model = thinker = (
            OmniThinkerForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(args.device).eval()
        )
    if args.output and not model.has_talker:
        raise ValueError(f"{args.model} has no talker/token2wav: drop --output for a text reply")
    if args.output and args.speaker not in model.speakers:
        known = ", ".join(model.speakers.names()) or "none"
        raise ValueError(f"--speaker {args.speaker}: not a speaker of {args.model}; known speakers: {known}")
    inputs = _load_inputs(processor, args, args.device)
    generation = _text_generation_kwargs(args, thinker.config)
    if args.stream:
        return _stream_chat(model, processor, inputs, generation, args)
    with torch.inference_mode():
        if args.output:
            kwargs = {f"thinker_{k}": v for k, v in generation.items()} | _speech_codes(args)
            output, waveform = model.generate(**inputs, speaker=args.speaker, **kwargs)
        else:
            output = model.generate(**inputs, **generation)
    reply = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    print(reply)
    if args.output:
        import soundfile

        from .processing.encoding import pcm16_samples
        from .token2wav import SAMPLING_RATE

        samples = pcm16_samples(waveform.float().cpu().numpy())
        soundfile.write(args.output, samples, SAMPLING_RATE, subtype="PCM_16")
        print(f"Wrote {waveform.numel() / SAMPLING_RATE:.2f} s of speech ({args.speaker}) to {args.output}")
    return reply


def _speech_codes(args) -> dict:
    """`--max-speech-codes` when given; else the Talker's budget follows the reply (`omni_hf.talker.speech_budget`)."""
    return {} if args.max_speech_codes is None else {"talker_max_new_tokens": args.max_speech_codes}


def _stream_chat(model, processor, inputs, generation, args) -> str:
    """Print the reply as it is generated; with `--output`, write the speech to a WAV that grows chunk by chunk."""
    import soundfile
    import torch

    from .omni import AudioChunk, StreamStats, TextDelta
    from .processing.encoding import pcm16_samples
    from .token2wav import SAMPLING_RATE

    speak = bool(args.output)
    kwargs = {f"thinker_{k}": v for k, v in generation.items()} | _speech_codes(args)
    reply = []
    wav = soundfile.SoundFile(args.output, "w", SAMPLING_RATE, 1, subtype="PCM_16") if speak else None
    try:
        with torch.inference_mode():
            for event in model.stream(
                **inputs, speaker=args.speaker, return_audio=speak, tokenizer=processor, **kwargs
            ):
                if isinstance(event, TextDelta):
                    reply.append(event.text)
                    print(event.text, end="", flush=True)
                elif isinstance(event, AudioChunk):
                    wav.write(pcm16_samples(event.audio))
                    wav.flush()  # a player can start on the file while the reply is still being generated
                elif isinstance(event, StreamStats):
                    print()
                    if speak:
                        print(f"Wrote {event.audio_seconds:.2f} s of speech ({args.speaker}) to {args.output}")
                    print(f"Stream stats: {event.summary()}")
    finally:
        if wav is not None:
            wav.close()
    return "".join(reply)


def convert(args) -> None:
    """Load a checkpoint (official or ours) and write it in our layout."""

    from .common.staged_save import staged_save
    from .omni import OmniForConditionalGeneration

    check_model_path(args.source, "source")
    destination = Path(args.destination)
    if destination.exists() and not destination.is_dir():
        raise NotADirectoryError(f"{destination} exists and is not a folder")
    if destination.exists() and any(destination.iterdir()) and not args.overwrite:
        raise ValueError(f"{destination} exists and is not empty: choose a new directory or pass --overwrite")
    check_model_path(args.source, "SRC")
    model = OmniForConditionalGeneration.from_pretrained(args.source)
    # Staged saves: only the files a previous save of ours wrote are replaced or removed; other files are kept.
    model.save_pretrained(args.destination)
    try:
        from .processing import OmniProcessor

        OmniProcessor.from_pretrained(args.source).save_pretrained(args.destination)
    except (OSError, ValueError) as error:  # weights without a tokenizer: still a usable model folder
        print(f"(no processor copied: {error})", file=sys.stderr)
        with staged_save(args.destination, "processor"):  # and no previous model's processor left behind
            pass
    print(
        f"Wrote {args.destination}: thinker + talker safetensors, token2wav/ pipeline, speakers {model.speakers.names()}"
    )


def export(args) -> None:
    """Load a model (ours or official) and write it in the official `qwen2_5_omni` layout (transformers reads it)."""
    from pathlib import Path

    from .omni import OmniForConditionalGeneration
    from .omni.export_official import export_official

    destination = Path(args.destination)
    if destination.exists() and any(destination.iterdir()) and not args.overwrite:
        raise ValueError(f"{destination} exists and is not empty: choose a new directory or pass --overwrite")
    check_model_path(args.source, "SRC")
    model = OmniForConditionalGeneration.from_pretrained(args.source)
    try:
        from .processing import OmniProcessor

        processor = OmniProcessor.from_pretrained(args.source)
    except (OSError, ValueError) as error:  # weights without a tokenizer
        print(f"(no tokenizer copied: {error})", file=sys.stderr)
        processor = None
    export_official(model, destination, processor=processor, overwrite=args.overwrite)
    print(f"Wrote {destination} in the official qwen2_5_omni layout (speakers {model.speakers.names()})")


def speaker(args) -> None:
    """`omni-hf speaker add|list`: manage the speakers saved with a model in omni_hf's layout."""

    from .voices.speakers import OFFICIAL_SPEAKERS, SPEAKERS_INDEX, SpeakerBank

    directory = Path(args.model)
    if not (directory / SPEAKERS_INDEX).is_file():
        hint = (
            " (an official checkpoint: run `omni-hf convert` first)"
            if (directory / OFFICIAL_SPEAKERS).is_file()
            else ""
        )
        raise ValueError(f"{directory} has no {SPEAKERS_INDEX}{hint}")
    if args.action == "list":
        bank = SpeakerBank.load(directory)
        for name in bank.names():
            print(f"{name}\tbos {bank[name].bos_token_id}\treference_mel {tuple(bank[name].reference_mel.shape)}")
        return
    from .common.staged_save import exclusive_folder
    from .voices.speaker_builder import build_speaker

    with exclusive_folder(directory):  # two `speaker add` at once: each reads the bank the other saved
        bank = SpeakerBank.load(directory)
        if args.name in bank and not args.overwrite:
            raise ValueError(
                f"A speaker named {args.name!r} exists already in {directory} (pass --overwrite to replace it)"
            )
        new = build_speaker(args.audio, args.name, bank[args.base], max_seconds=args.max_seconds)
        bank.add(new, overwrite=args.overwrite)
        bank.save(directory)
    print(
        f"Added speaker {args.name!r} ({new.reference_mel.shape[1] / 100:.2f} s reference, base {args.base}) to {directory}"
    )


PUSH_KINDS = ["model", "thinker", "token2wav", "speakers", "voice-adapter", "voice", "dataset"]  # "voice": deprecated


def _publish(args, dry_run: bool, list_files: bool = False):
    """Load the artifact `args.source` of kind `args.kind` and push it (or, with `dry_run`, render its card; with
    `list_files` too, return the `UploadPlan`: the card and the files the push would upload)."""

    from . import hub

    source = Path(args.source)
    common = dict(results=args.results, dry_run=dry_run, list_files=list_files)
    if not dry_run:
        common.update(token=args.token, private=args.private or None)
    if args.base_model:
        common["base_model"] = args.base_model
    if args.kind == "model":
        return hub.push_model(source, args.repo_id, **common)
    if args.kind == "dataset":
        return hub.push_preference_dataset(source, args.repo_id, **common)
    if args.kind == "speakers":
        return hub.push_speakers(source, args.repo_id, **common)
    if args.kind == "token2wav":
        from .token2wav import OmniToken2WavPipeline

        folder = source / "token2wav" if (source / "token2wav" / "model_index.json").is_file() else source
        return hub.push_token2wav(OmniToken2WavPipeline.from_pretrained(folder), args.repo_id, **common)
    from .omni import OmniForConditionalGeneration
    from .processing import OmniProcessor
    from .thinker import OmniThinkerForConditionalGeneration

    if args.kind == "thinker":
        thinker = OmniThinkerForConditionalGeneration.from_pretrained(source)
        try:
            processor = OmniProcessor.from_pretrained(source)
        except (OSError, ValueError):
            processor = None
        return hub.push_thinker(thinker, args.repo_id, processor=processor, **common)
    if not args.model:
        raise ValueError("push/card voice-adapter needs --model: the base model the adapter was trained on")
    model = OmniForConditionalGeneration.from_pretrained(args.model)
    name = model.voice_adapters.load(source, name=args.voice_adapter)
    common.setdefault("base_model", args.model)
    own_card = source / "README.md" if source.is_dir() else None  # e.g. the DPO recipe's card: kept, not replaced
    return hub.push_voice_adapter(model, name, args.repo_id, own_card=own_card, **common)


def _checked_publish(args, dry_run: bool, list_files: bool = False):
    from .hub import PushError

    try:
        return _publish(args, dry_run, list_files)
    except (PushError, TypeError) as error:  # reported by main() as `omni-hf push: ...`, exit status 2
        raise ValueError(str(error)) from error


def card(args) -> None:
    """`omni-hf card KIND SOURCE --repo-id ID`: render the card an artifact would be published with."""
    text = str(_checked_publish(args, dry_run=True))
    if args.output:
        with open(args.output, "w") as file:
            file.write(text)
        print(f"Wrote the {args.kind} card for {args.repo_id} to {args.output}")
    else:
        print(text)


def push(args) -> None:
    """`omni-hf push KIND SOURCE REPO_ID`: publish an artifact with its generated card in one commit; with
    `--dry-run`, print the files it would upload and the card, and upload nothing (no token needed)."""
    if args.dry_run:
        plan = _checked_publish(args, dry_run=True, list_files=True)
        print(f"Would push {args.kind} {args.source} to {args.repo_id} ({len(plan.files)} files):")
        print("\n".join(f"  {path}" for path in plan.files))
        print(f"\nCard (README.md):\n{plan}")
        return
    info = _checked_publish(args, dry_run=False)
    print(f"Pushed {args.kind} {args.source} to {args.repo_id}: {info.commit_url}")


def _publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=PUSH_KINDS, help="what SOURCE is")
    parser.add_argument(
        "source",
        help="model folder (our layout) for model/thinker/token2wav/speakers; adapter folder for voice; "
        "Dataset.save_to_disk folder for dataset",
    )
    parser.add_argument(
        "--results", action="append", help="measured figures (JSON, see omni_hf.hub.cards); repeatable"
    )
    parser.add_argument("--base-model", help="Hub id of the base model (card metadata)")
    parser.add_argument("--model", help="voice-adapter: the base model folder or repo to load the adapter onto")
    parser.add_argument(
        "--voice-adapter",
        "--voice",  # deprecated spelling
        dest="voice_adapter",
        help="voice-adapter: the adapter's name (default: from voice.json)",
    )


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
    c.add_argument("--output", help="also speak the reply: write a 24 kHz WAV here")
    c.add_argument("--speaker", default="Chelsie", help="voice for --output (see the model's speakers)")
    c.add_argument(
        "--max-speech-codes",
        type=int,
        default=None,
        help="at most this many codes (50 per second); default: follows the reply's length (at most 4096)",
    )
    c.add_argument(
        "--allow-special-tokens",
        action="store_true",
        help="let special-token strings in --text/--system act as control tokens (default: kept as plain text)",
    )
    c.add_argument(
        "--stream",
        action="store_true",
        help="print text as it is generated and write --output progressively (speech starts before the reply ends)",
    )
    c.set_defaults(func=chat)
    k = sub.add_parser("speaker", help="add a voice from a reference clip, or list the voices, of a model")
    k.add_argument("action", choices=["add", "list"])
    k.add_argument("model", help="a model directory in omni_hf's layout (see `omni-hf convert`)")
    k.add_argument("--audio", help="reference clip (wav/flac/ogg, any sampling rate; 4 s of speech are kept)")
    k.add_argument("--name", help="the new speaker's name")
    k.add_argument("--base", default="Chelsie", help="speaker whose x-vector and Talker voice entry are kept")
    k.add_argument("--max-seconds", type=float, default=4.0)
    k.add_argument("--overwrite", action="store_true", help="replace a speaker of the same name")
    k.set_defaults(func=speaker)
    v = sub.add_parser("convert", help="write a checkpoint (official or ours) in omni_hf's layout")
    v.add_argument("source", help="local directory or Hub repo")
    v.add_argument("destination", help="new local directory")
    v.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty destination (replaces what omni_hf wrote there; other files are kept)",
    )
    v.set_defaults(func=convert)
    e = sub.add_parser("export", help="write a model in the official qwen2_5_omni layout (for transformers)")
    e.add_argument("source", help="local directory or Hub repo (omni_hf's layout or official)")
    e.add_argument("destination", help="new local directory")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty destination")
    e.set_defaults(func=export)
    d = sub.add_parser("card", help="render the Hub card of a model, part, voice, speaker set or dataset")
    _publish_arguments(d)
    d.add_argument("--repo-id", required=True, help="the repo the card is for (used in its usage snippet)")
    d.add_argument("--output", help="write the card here instead of printing it")
    d.set_defaults(func=card)
    p = sub.add_parser("push", help="publish a model, part, voice, speaker set or dataset with its card")
    _publish_arguments(p)
    p.add_argument("repo_id", help="namespace/name on the Hub")
    p.add_argument("--token", help="write token (default: HF_TOKEN or the saved login)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="list the files and print the card; upload nothing")
    p.set_defaults(func=push)
    s = sub.add_parser("serve", help="OpenAI-compatible server: speech replies streamed to many clients, batched")
    from .serving.server import add_serve_arguments, serve

    add_serve_arguments(s)
    s.set_defaults(func=checked_serve(serve))
    from .evaluation.cli import add_eval_parsers

    add_eval_parsers(sub)
    return parser


def checked_serve(serve):
    """`omni-hf serve` with the model path and device checked before any weights load (as `chat` does)."""

    def run(args) -> None:
        check_model_path(args.model, "MODEL")
        check_device(args.device)
        serve(args)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "speaker" and args.action == "add" and not (args.audio and args.name):
        parser.error("speaker add needs --audio and --name")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"omni-hf {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
