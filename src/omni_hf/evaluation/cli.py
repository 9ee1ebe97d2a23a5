"""`omni-hf eval speech|clips` and `omni-hf bench serve`: the command-line side of `omni_hf.evaluation`.

omni-hf eval speech ./omni-7b --texts texts.txt --speaker Chelsie --out eval-7b
omni-hf eval speech ./teacher ./student --texts texts.txt --asr openai/whisper-large-v3 --out eval-distill
omni-hf eval clips clips.jsonl --reference-audio voice.wav --out eval-clips
omni-hf bench serve http://127.0.0.1:8000 --concurrency 1 2 4 8 --requests 16 --out bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path


def _scorer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--asr",
        help="ASR: 'pocketsphinx' (default, offline) or a transformers checkpoint (e.g. openai/whisper-large-v3)",
    )
    parser.add_argument(
        "--speaker-model",
        help="speaker encoder: 'resemblyzer' (default, offline), a transformers x-vector checkpoint "
        "(e.g. microsoft/wavlm-base-plus-sv) or 'none'",
    )
    parser.add_argument("--naturalness", choices=["utmosv2"], help="also predict MOS (needs the utmosv2 package)")
    parser.add_argument("--reference-audio", help="clip of the target voice for speaker similarity")
    parser.add_argument("--out", default="eval", help="folder for results.json, results.md and results.png")
    parser.add_argument("--device", default="cpu")


def _texts(args) -> list[str]:
    from .speech import read_texts

    if bool(args.texts) == bool(args.dataset):
        raise ValueError("give one of --texts FILE or --dataset ID")
    if args.texts:
        texts = read_texts(args.texts)
    else:
        from datasets import load_dataset  # the user named a Hub dataset: fetched through the datasets cache

        rows = load_dataset(args.dataset, split=args.split)
        if args.text_column not in rows.column_names:
            raise ValueError(f"--dataset {args.dataset}: no column {args.text_column!r} (has {rows.column_names})")
        texts = [str(t) for t in rows[args.text_column]]
    return texts[: args.max_items] if args.max_items else texts


def _finish(paths: dict, markdown_path: Path, scored: int, what: str) -> None:
    print(markdown_path.read_text(), end="")
    print("Wrote " + ", ".join(str(p) for p in paths.values()))
    if scored == 0:
        raise ValueError(f"no {what} could be scored (the errors are listed in {markdown_path})")


def eval_speech(args) -> None:
    """Speak the texts with each MODEL (and its voice adapter), score every clip, write the report."""
    import torch

    from ..cli import check_device, check_model_path
    from .report import write_speech_report
    from .speech import SpeechScorers, load_clip, score_items, summarize
    from .synthesis import SAMPLING_RATE, speak_texts, speaker_reference_audio

    texts = _texts(args)
    for model in args.models:
        check_model_path(model, "MODEL")
    check_device(args.device)
    scorers = SpeechScorers.load(args.asr, args.speaker_model, args.naturalness, args.device)
    from .. import OmniForConditionalGeneration
    from ..processing import OmniProcessor

    results = []
    for model_path in args.models:
        model = OmniForConditionalGeneration.from_pretrained(model_path, dtype=torch.float32).to(args.device).eval()
        model.token2wav.set_progress_bar_config(disable=True)
        processor = OmniProcessor.from_pretrained(model_path)
        systems = [(Path(model_path).name or model_path, None)]
        if args.voice_adapter:
            adapter = model.voice_adapters.load(args.voice_adapter)
            systems.append((f"{systems[0][0]}+{adapter}", adapter))
        if args.reference_audio:
            reference = load_clip(args.reference_audio, "--reference-audio")
        else:  # the voice's own reference mel, vocoded by this model
            reference = (speaker_reference_audio(model, args.speaker), SAMPLING_RATE)
        for system, adapter in systems:
            waves = speak_texts(
                model, processor, texts, args.speaker, adapter, args.max_speech_codes, args.token2wav_steps, args.seed
            )
            items = [
                {"id": f"{i:03d}", "text": t, "audio": (w, SAMPLING_RATE)}
                for i, (t, w) in enumerate(zip(texts, waves))
            ]
            if args.save_audio:
                import soundfile

                folder = Path(args.out) / "audio" / system
                folder.mkdir(parents=True, exist_ok=True)
                for item, wave in zip(items, waves):
                    soundfile.write(folder / f"{item['id']}.wav", wave, SAMPLING_RATE, subtype="PCM_16")
            results += score_items(items, scorers, reference=reference, system=system)
        del model
    models = scorers.names() | {"reference voice": args.reference_audio or f"{args.speaker} (model's reference mel)"}
    paths = write_speech_report(args.out, results, summarize(results), models)
    _finish(paths, paths["markdown"], sum("error" not in r for r in results), "clip")


def read_manifest(path: str) -> list[dict]:
    """`.jsonl` lines `{"text", "audio"[, "id", "system", "reference"]}`; audio paths relative to the manifest."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MANIFEST {path}: no such file")
    base = Path(path).parent
    items = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"MANIFEST {path} line {number}: not JSON ({error.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("audio"), str):
                raise ValueError(f"MANIFEST {path} line {number}: expected an object with 'audio' (a path) and 'text'")
            for key in ("audio", "reference"):
                if isinstance(row.get(key), str) and not Path(row[key]).is_absolute():
                    row[key] = str(base / row[key])
            row.setdefault("id", Path(row["audio"]).stem)
            items.append(row)
    if not items:
        raise ValueError(f"MANIFEST {path}: no rows")
    return items


def eval_clips(args) -> None:
    """Score existing clips listed in a manifest (systems compared side by side by their `system` field)."""
    from .report import write_speech_report
    from .speech import SpeechScorers, score_items, summarize

    items = read_manifest(args.manifest)
    scorers = SpeechScorers.load(args.asr, args.speaker_model, args.naturalness, args.device)
    results = []
    for system in dict.fromkeys(item.get("system", "clips") for item in items):
        chosen = [item for item in items if item.get("system", "clips") == system]
        results += score_items(chosen, scorers, reference=args.reference_audio, system=system)
    models = scorers.names() | ({"reference voice": args.reference_audio} if args.reference_audio else {})
    paths = write_speech_report(args.out, results, summarize(results), models)
    _finish(paths, paths["markdown"], sum("error" not in r for r in results), "clip")


def bench_serve(args) -> None:
    """Drive a running server at each concurrency level; print the table, write bench.json/.md/.png."""
    from .bench_serve import benchmark, write_bench_report

    if any(level < 1 for level in args.concurrency) or args.requests < 1:
        raise ValueError("--concurrency levels and --requests must be >= 1")
    url = args.url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"URL {args.url}: expected http://HOST:PORT (the server's base URL)")
    url = url if url.endswith("/v1") else url + "/v1"
    prompts = None
    if args.prompts:
        from .speech import read_texts

        prompts = read_texts(args.prompts)
    report = asyncio.run(
        benchmark(
            url, args.concurrency, args.requests, model=args.model,
            api_key=args.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY", prompts=prompts, voice=args.voice,
            max_tokens=args.max_tokens, timeout=args.timeout, level_timeout=args.level_timeout, warmup=args.warmup,
        )
    )  # fmt: skip
    paths = write_bench_report(args.out, report)
    print(paths["markdown"].read_text(), end="")
    print("Wrote " + ", ".join(str(p) for p in paths.values()))
    if report.get("error"):
        raise ValueError(report["error"])


def add_eval_parsers(sub) -> None:
    """`eval` (speech, clips) and `bench` (serve) subcommands of `omni-hf`."""
    e = sub.add_parser("eval", help="score speech quality: WER/CER, speaker similarity, pause error (offline default)")
    kinds = e.add_subparsers(dest="kind", required=True)
    s = kinds.add_parser("speech", help="speak texts with one or more models and score each clip")
    s.add_argument(
        "models", nargs="+", metavar="MODEL", help="model folder(s) in omni_hf's layout, compared side by side"
    )
    s.add_argument("--texts", help="texts to speak, one per line")
    s.add_argument("--dataset", help="a Hub dataset id with the texts (fetched: you asked for it)")
    s.add_argument("--split", default="test")
    s.add_argument("--text-column", default="text")
    s.add_argument("--max-items", type=int, help="score at most this many texts")
    s.add_argument("--speaker", default="Chelsie", help="the voice the models speak in")
    s.add_argument("--voice-adapter", help="also score each model with this voice adapter (adapter vs its base)")
    s.add_argument("--max-speech-codes", type=int, default=600, help="codes per clip at most (50 per second)")
    s.add_argument("--token2wav-steps", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save-audio", action="store_true", help="keep the spoken clips under OUT/audio/")
    _scorer_arguments(s)
    s.set_defaults(func=eval_speech)
    c = kinds.add_parser("clips", help="score existing clips listed in a .jsonl manifest (text, audio[, system])")
    c.add_argument("manifest", help='.jsonl: {"text": ..., "audio": "a.wav", "system": "teacher"} per line')
    _scorer_arguments(c)
    c.set_defaults(func=eval_clips)
    b = sub.add_parser("bench", help="latency and throughput of a running OpenAI-compatible speech server")
    targets = b.add_subparsers(dest="kind", required=True)
    v = targets.add_parser("serve", help="stream text+audio with the openai client at each concurrency level")
    v.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8000")
    v.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent clients per level")
    v.add_argument("--requests", type=int, default=8, help="requests per level")
    v.add_argument("--model", help="model name to request (default: the first the server lists)")
    v.add_argument("--api-key", help="default: OPENAI_API_KEY, else none")
    v.add_argument("--voice", default="Chelsie")
    v.add_argument("--max-tokens", type=int, default=64)
    v.add_argument("--prompts", help="user prompts, one per line (default: four short questions)")
    v.add_argument("--timeout", type=float, default=600.0, help="seconds per request at most")
    v.add_argument("--level-timeout", type=float, default=3600.0, help="no new request after this many seconds")
    v.add_argument("--warmup", type=int, default=1, help="unmeasured requests first")
    v.add_argument("--out", default="bench", help="folder for bench.json, bench.md and bench.png")
    v.set_defaults(func=bench_serve)


__all__ = ["add_eval_parsers", "bench_serve", "eval_clips", "eval_speech", "read_manifest"]
