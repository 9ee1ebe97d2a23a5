"""Thinker benchmark: omni_hf vs transformers' Qwen2.5-Omni on the same random small weights and inputs.

Measures processor time, prefill time, decode tokens/s and peak memory of prefill, and prints each figure with the
ratio reference / ours (higher is better for time, lower is better for memory).

    python benchmarks/thinker.py                  # small config: text hidden 512, 8 layers, real 152k vocabulary
    python benchmarks/thinker.py --audio-seconds 30 --new-tokens 64 --repeats 3
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import peak_rss_mb, report, reset_peak_rss, run_child


def build_checkpoint(path: Path) -> None:
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    from omni_hf.testing import reinit_, tiny_thinker_config_dict

    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(
        Qwen2_5OmniConfig(thinker_config=tiny_thinker_config_dict("small"), enable_audio_output=False)
    )
    reinit_(model, std=0.05)
    model.save_pretrained(path)


def model_inputs(audio_seconds: float, seed: int = 0) -> dict:
    """Text + an audio clip + an image (22x30 patches), ids built directly with the tiny special tokens."""
    from omni_hf.common.tmrope import audio_token_lengths
    from omni_hf.testing import TINY_TOKEN_IDS as T

    g = torch.Generator().manual_seed(seed)
    frames = int(audio_seconds * 100)
    n_audio = int(audio_token_lengths(torch.tensor([frames])))
    grid = torch.tensor([[1, 22, 30]])
    ids = [*range(10, 40), T["audio_bos"], *[T["audio"]] * n_audio, T["audio_eos"], T["vision_bos"]]
    ids += [*[T["image"]] * (22 * 30 // 4), T["vision_eos"], *range(40, 60)]
    return {
        "input_ids": torch.tensor([ids]),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        "input_features": torch.randn(1, 128, frames, generator=g),
        "feature_attention_mask": torch.ones(1, frames, dtype=torch.long),
        "pixel_values": torch.randn(22 * 30, 1176, generator=g),
        "image_grid_thw": grid,
    }


def run_model(impl: str, path: str, audio_seconds: float, new_tokens: int, repeats: int) -> dict:
    """Runs in its own process so peak memory is that implementation's alone."""
    torch.set_num_threads(2)
    if impl == "ours":
        from omni_hf import OmniThinkerForConditionalGeneration

        model = OmniThinkerForConditionalGeneration.from_pretrained(path).eval()
    else:
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path).eval()
    inputs = model_inputs(audio_seconds)
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=2, **gen)  # warm-up
        prefill, full = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            model.generate(**inputs, max_new_tokens=1, **gen)
            prefill.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.generate(**inputs, max_new_tokens=new_tokens + 1, **gen)
            full.append(time.perf_counter() - start)
        rss_before = peak_rss_mb()
        reset_peak_rss()
        base = peak_rss_mb()
        model.generate(**inputs, max_new_tokens=1, **gen)
        peak = peak_rss_mb() - base if base < rss_before else float("nan")
    prefill_s, full_s = min(prefill), min(full)
    return {
        "prefill_s": prefill_s,
        "decode_tok_s": new_tokens / max(full_s - prefill_s, 1e-9),
        "prefill_peak_mb": peak,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
    }


def build_processors():
    """Our processor (tiny tokenizer) and transformers' `Qwen2_5OmniProcessor` on the same tokenizer and image
    processor, with the official feature-extractor settings (clips padded to 300 s before the STFT)."""
    from transformers import BatchFeature, Qwen2_5OmniProcessor, WhisperFeatureExtractor
    from transformers.video_processing_utils import VideoProcessorMixin

    from omni_hf.testing.tokenizer import build_tiny_processor

    class NoVideoProcessor(VideoProcessorMixin):  # transformers' video processor needs torchvision: unused here
        temporal_patch_size, merge_size = 2, 2
        model_input_names = ["pixel_values_videos", "video_grid_thw"]

        def __call__(self, videos, **kwargs):
            return BatchFeature({})

    class ReferenceProcessor(Qwen2_5OmniProcessor):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(argument_name, argument)

    ours = build_tiny_processor()
    official_features = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=300, return_attention_mask=True
    )
    reference = ReferenceProcessor(
        image_processor=ours.image_processor,
        video_processor=NoVideoProcessor(),
        feature_extractor=official_features,
        tokenizer=ours.tokenizer,
        chat_template=ours.chat_template,
    )
    return ours, reference


def run_processor(impl: str, audio_seconds: float, repeats: int) -> float:
    """Seconds to turn text + a clip of `audio_seconds` + a 640x480 image into model inputs."""
    import numpy as np

    from omni_hf.testing.media import make_image

    ours, reference = build_processors()
    processor = ours if impl == "ours" else reference
    audio = np.random.default_rng(0).standard_normal(int(audio_seconds * 16000)).astype(np.float32) * 0.1
    image = make_image(640, 480)
    text = "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|><|vision_bos|><|IMAGE|><|vision_eos|>Hi<|im_end|>\n"

    def call():
        return processor(text=[text], audio=[audio], images=[image], return_tensors="pt")

    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def child(args) -> None:
    if args.child == "processor":
        result = {"processor_s": run_processor(args.impl, args.audio_seconds, args.repeats)}
    else:
        result = run_model(args.impl, args.path, args.audio_seconds, args.new_tokens, args.repeats)
    report(result)


def spawn(kind: str, impl: str, path: str, args) -> dict:
    return run_child(
        __file__,
        [
            "--child",
            kind,
            "--impl",
            impl,
            "--path",
            path,
            "--audio-seconds",
            str(args.audio_seconds),
            "--new-tokens",
            str(args.new_tokens),
            "--repeats",
            str(args.repeats),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-seconds", type=float, default=20.0)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each implementation")
    parser.add_argument("--skip-processor", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--impl", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory() as tmp:
        build_checkpoint(Path(tmp))
        # Alternate the implementations over rounds and keep each one's best figures: this VM's speed drifts.
        results = {"reference": {}, "ours": {}}
        for _ in range(args.rounds):
            for impl in ("reference", "ours"):
                found = spawn("model", impl, tmp, args)
                if not args.skip_processor:
                    found.update(spawn("processor", impl, tmp, args))
                best = results[impl]
                for key, value in found.items():
                    keep_max = key == "decode_tok_s"
                    if key not in best or (value > best[key] if keep_max else value < best[key]):
                        best[key] = value
    rows = [
        ("prefill (s)", "prefill_s", True),
        ("decode (tokens/s)", "decode_tok_s", False),
        ("prefill peak memory (MB)", "prefill_peak_mb", True),
    ]
    if not args.skip_processor:
        rows.insert(0, ("processor (s)", "processor_s", True))
    print(
        f"Thinker benchmark: small config, {results['ours']['prompt_tokens']} prompt tokens "
        f"({args.audio_seconds:g} s audio + image), {args.new_tokens} new tokens, torch threads 2"
    )
    print(f"{'metric':<28}{'reference':>12}{'omni_hf':>12}{'ref/ours':>10}")
    for label, key, lower_is_better in rows:
        ref, ours = results["reference"][key], results["ours"][key]
        ratio = ref / ours if lower_is_better or key.endswith("_mb") else ours / ref
        if key.endswith("_mb"):
            ratio = ours / ref  # memory: ours / reference, lower is better
            print(f"{label:<28}{ref:>12.1f}{ours:>12.1f}{ratio:>9.2f}x  (ours/ref)")
        else:
            print(f"{label:<28}{ref:>12.4f}{ours:>12.4f}{ratio:>9.2f}x")


if __name__ == "__main__":
    main()
