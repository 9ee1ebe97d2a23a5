"""Latency benchmark: streaming omni_hf vs transformers' Qwen2.5-Omni (which returns audio only when done).

Same random small weights as `speech.py` (talker hidden 384 x 6, DiT 256 x 6, BigVGAN 256 channels, thinker
hidden 512 x 8 with the real 152k vocabulary), 2 torch threads, each measurement in its own process:

1. a spoken reply of `--codes` codes (500 = 10 s): the reference's full `generate` time vs our `stream()`'s time
   to first audio, plus our RTF per stage (thinker, talker, DiT, vocoder, and wall / audio);
2. a `--input-seconds` (30 s) spoken question: latency from the end of the input to the first text token and to
   the first audio, one-shot (processor + prefill of the whole prompt, then `stream`) vs chunked prefill
   (`OmniSession` fed while the audio "arrives"; only the last chunk and the prompt suffix remain).

    python benchmarks/latency.py                 # about 2 minutes
    python benchmarks/latency.py --codes 250 --input-seconds 10
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import report, run_child
from speech import build_checkpoint, fixed_reply_kwargs, load, prompt, speech_code_filter

THINKER_TOKENS = 20


def reply_kwargs(codes: int) -> dict:
    return fixed_reply_kwargs(codes, THINKER_TOKENS) | {"talker_logits_processor": speech_code_filter()}


OPTIONS = {"compile": False, "background": None}  # set from the command line in each child


def our_reply_kwargs(model, codes: int, compiled=("thinker", "talker")) -> dict:
    """Ours has the speech-code filter built in (`suppress_tokens`); extend it with the end tokens (fixed length).
    With `--compile`, the `compiled` decoders run the compiled decode step over a static cache."""
    kwargs = reply_kwargs(codes)
    model.talker.generation_config.suppress_tokens = kwargs.pop("talker_logits_processor")[0].suppress_tokens.tolist()
    if OPTIONS["compile"]:
        from transformers import CompileConfig

        config = CompileConfig(options={"cpp_wrapper": True})
        for stage in compiled:
            kwargs |= {f"{stage}_cache_implementation": "static", f"{stage}_compile_config": config}
    return kwargs


def run_reference_reply(path: str, codes: int) -> dict:
    model = load("reference", path)
    with torch.no_grad():
        start = time.perf_counter()
        _, wave = model.generate(**prompt(), **reply_kwargs(codes))
        elapsed = time.perf_counter() - start
    return {"first_audio_s": elapsed, "e2e_s": elapsed, "audio_s": wave.numel() / 24000}


def run_streamed_reply(path: str, codes: int, planned: bool = True, impl: str = "ours") -> dict:
    """Our `stream()`: a 2 s warm-up reply measures the stage speeds, `StreamingWindow.from_stage_seconds` picks the
    chunking from them (unless `planned` is False: the fixed default chunking), then the measured reply."""
    from omni_hf.omni import AudioChunk
    from omni_hf.token2wav.streaming import StreamingWindow

    model = load(impl, path)  # "student": token2wav is a few-step student (the plan follows its measured speed)
    background = OPTIONS["background"]
    list(model.stream(**prompt(), **our_reply_kwargs(model, 100), background_token2wav=background))  # compiles
    warm = list(model.stream(**prompt(), **our_reply_kwargs(model, 100), background_token2wav=background))[-1]
    window = StreamingWindow()
    if planned:
        horizon = -(-codes // 12)  # blocks of this reply (12 codes per 0.24 s block)
        window = StreamingWindow.from_stage_seconds(
            warm.stage_seconds, warm.audio_seconds, used=window, horizon_blocks=horizon
        )
    with torch.no_grad():
        start = time.perf_counter()
        gaps, played_until = [], None
        events = model.stream(
            **prompt(), window=window, background_token2wav=background, **our_reply_kwargs(model, codes)
        )
        for event in events:
            now = time.perf_counter() - start
            if isinstance(event, AudioChunk):
                if played_until is not None:
                    gaps.append(now - played_until)  # > 0: a real-time player would have starved
                played_until = max(played_until or now, now) + event.duration
        stats = event
    return {
        "first_audio_s": stats.time_to_first_audio,
        "first_text_s": stats.time_to_first_text,
        "e2e_s": stats.wall_seconds,
        "audio_s": stats.audio_seconds,
        "rtf": stats.rtf,
        "starved_s": float(sum(g for g in gaps if g > 0)),
        "chunk_blocks": list(window.chunk_blocks),
    }


def spoken_input(seconds: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 0.7 * t)) * t) * (1.2 + np.sin(2 * np.pi * 0.4 * t))
    return wave.astype(np.float32)


def run_input_latency(path: str, seconds: float, chunked: bool, impl: str = "ours") -> dict:
    """Seconds from the end of the spoken input to the first text token / first audio chunk."""
    from omni_hf.omni import AudioChunk, TextDelta
    from omni_hf.omni.session import OmniSession
    from omni_hf.testing.tokenizer import build_tiny_processor

    model, processor = load(impl, path), build_tiny_processor()
    wave = spoken_input(seconds)
    kwargs = our_reply_kwargs(model, 100, compiled=("talker",))  # a session's Thinker continues its own cache
    result = {}
    for _attempt in range(2):  # the first run warms up
        if chunked:
            session = OmniSession(model, processor)
            for i in range(0, wave.size, 1600):  # 0.1 s packets, prefilled as they arrive
                session.append_audio(wave[i : i + 1600])
            start = time.perf_counter()
            events = session.stream("Answer.", **kwargs)
        else:
            start = time.perf_counter()
            conversation = [
                {
                    "role": "user",
                    "content": [
                        {"type": "audio", "audio": wave, "sampling_rate": 16000},
                        {"type": "text", "text": "Answer."},
                    ],
                }
            ]
            inputs = processor.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
            events = model.stream(**inputs, **kwargs)
        first_text = first_audio = None
        with torch.no_grad():
            for event in events:
                if first_text is None and isinstance(event, TextDelta):
                    first_text = time.perf_counter() - start
                if first_audio is None and isinstance(event, AudioChunk):
                    first_audio = time.perf_counter() - start
        result = {
            "first_text_s": first_text,
            "first_audio_s": first_audio,
            "stages_to_first_audio": event.stage_seconds_to_first_audio,  # the last event: the stream's stats
        }
    return result


def child(args) -> None:
    import speech

    speech.STUDENT_STEPS = args.student_steps
    torch.set_num_threads(2)
    OPTIONS.update(compile=args.compile, background=args.background)
    if args.child == "reference":
        report(run_reference_reply(args.path, args.codes))
    elif args.child == "stream":
        report(run_streamed_reply(args.path, args.codes))
    elif args.child == "stream_fixed":
        report(run_streamed_reply(args.path, args.codes, planned=False))
    elif args.child == "stream_student":
        report(run_streamed_reply(args.path, args.codes, impl="student"))
    elif args.child == "chunked_student":
        report(run_input_latency(args.path, args.input_seconds, chunked=True, impl="student"))
    else:
        report(run_input_latency(args.path, args.input_seconds, chunked=args.child == "chunked"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=500, help="spoken reply length in codes (50 per second)")
    parser.add_argument("--input-seconds", type=float, default=30.0, help="spoken input length")
    parser.add_argument("--compare-fixed", action="store_true", help="also stream with the fixed default chunking")
    parser.add_argument("--skip-input", action="store_true", help="skip the spoken-input latency part")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of each measurement (best kept)")
    parser.add_argument("--skip-reply", action="store_true", help="skip the spoken-reply part")
    parser.add_argument("--compile", action="store_true", help="ours decodes with the compiled step (static cache)")
    parser.add_argument("--background", action="store_true", default=None, help="token2wav on a worker thread")
    parser.add_argument(
        "--student-steps", type=int, default=2, help="also with a token2wav student of this many steps (0: none)"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        build_checkpoint(Path(tmp))
        common = ["--path", tmp, "--codes", str(args.codes), "--input-seconds", str(args.input_seconds)]
        common += ["--compile"] * args.compile + ["--background"] * bool(args.background)
        common += ["--student-steps", str(args.student_steps)]
        print(
            "Latency benchmark: small config, 2 torch threads, same random weights for both implementations, "
            f"best of {args.rounds} alternated runs" + (", omni_hf with compiled decode steps" if args.compile else "")
        )
        if not args.skip_reply:
            report_reply(args, common)
        if not args.skip_input:
            report_input(args, common)


def alternated(kinds: list[str], common: list[str], rounds: int) -> list[dict]:
    """Run each child kind `rounds` times, alternating; keep the run with the lowest end-to-end / first-audio time."""
    best: list[dict | None] = [None] * len(kinds)
    for _ in range(rounds):
        for i, kind in enumerate(kinds):
            found = run_child(__file__, ["--child", kind, *common])
            key = "e2e_s" if kind == "reference" else "first_audio_s"
            if best[i] is None or found[key] < best[i][key]:
                best[i] = found
    return best


def report_reply(args, common: list[str]) -> None:
    kinds = ["reference", "stream"] + ["stream_student"] * bool(args.student_steps)
    kinds += ["stream_fixed"] * args.compare_fixed
    ref, ours, *rest = alternated(kinds, common, args.rounds)
    student = rest.pop(0) if args.student_steps else None
    fixed = rest[0] if rest else None
    share = ours["first_audio_s"] / ref["e2e_s"]
    print(f"\nSpoken reply of {ours['audio_s']:.1f} s ({args.codes} codes, {THINKER_TOKENS} text tokens):")
    print(f"  reference generate, end to end (first audio = last): {ref['e2e_s']:.2f} s")
    print(f"  omni_hf stream, first text:                          {ours['first_text_s']:.3f} s")
    print(f"  omni_hf stream, first audio:                         {ours['first_audio_s']:.2f} s ({share:.3f} of it)")
    print(f"  omni_hf stream, end to end:                          {ours['e2e_s']:.2f} s")
    print("  RTF per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in ours["rtf"].items()))
    print(f"  chunk schedule from the measured stage speeds (blocks of 0.24 s): {ours['chunk_blocks']}")
    print(f"  player starvation after the first chunk: {ours['starved_s']:.2f} s")
    if fixed is not None:
        print(
            f"  fixed default chunking {fixed['chunk_blocks']}: first audio {fixed['first_audio_s']:.2f} s "
            f"({fixed['first_audio_s'] / ref['e2e_s']:.3f} of the reference), starvation {fixed['starved_s']:.2f} s"
        )
    met = ours["starved_s"] == 0 and share <= 0.1
    print(
        f"TARGET smooth playback: 0 s starvation with first audio <= 0.1 of the reference's end to end -> "
        f"{ours['starved_s']:.2f} s starvation, first audio {share:.3f}: {'met' if met else 'NOT met'}"
    )
    if student is not None:
        share = student["first_audio_s"] / ref["e2e_s"]
        met = student["starved_s"] == 0 and share <= 0.1
        print(
            f"  with the {args.student_steps}-step token2wav student: first audio {student['first_audio_s']:.2f} s, "
            f"end to end {student['e2e_s']:.2f} s, chunks {student['chunk_blocks']}, RTF "
            + ", ".join(f"{k} {v:.2f}" for k, v in student["rtf"].items())
        )
        print(
            f"TARGET smooth playback with the student: -> {student['starved_s']:.2f} s starvation, first audio "
            f"{share:.3f}: {'met' if met else 'NOT met'}"
        )


def report_input(args, common: list[str]) -> None:
    kinds = ["one_shot", "chunked"] + ["chunked_student"] * bool(args.student_steps)
    one_shot, chunked, *student = alternated(kinds, common, args.rounds)
    print(f"\nAfter the end of a {args.input_seconds:g} s spoken input:")
    for label, key, target in (("first text", "first_text_s", 5), ("first audio", "first_audio_s", 3)):
        ratio = one_shot[key] / chunked[key]
        print(
            f"  {label:<12} one-shot prefill {one_shot[key]:.3f} s, chunked prefill {chunked[key]:.3f} s: "
            f"{ratio:.1f}x lower"
        )
        print(
            f"TARGET {label} after a {args.input_seconds:g} s spoken input, chunked vs one-shot: >= {target}x -> "
            f"{ratio:.1f}x: {'met' if ratio >= target else 'NOT met'}"
        )
    labelled = [("one-shot", one_shot), ("chunked", chunked)] + [("chunked + student", s) for s in student]
    for label, result in labelled:
        stages = ", ".join(f"{k} {v:.2f} s" for k, v in result["stages_to_first_audio"].items())
        print(f"  {label} first audio is made of: {stages} (the rest: processor, audio encoder, Python)")
    for result in student:
        share = result["stages_to_first_audio"]["dit"] / result["first_audio_s"]
        print(
            f"TARGET DiT share of the first audio after a {args.input_seconds:g} s spoken input, chunked, with the "
            f"student: <= 10 % -> {100 * share:.0f} % of {result['first_audio_s']:.2f} s: "
            f"{'met' if share <= 0.1 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
