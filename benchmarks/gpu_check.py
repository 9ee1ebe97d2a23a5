"""GPU readiness check (run through `benchmarks/gpu_check.sh`): parity, attention paths, worker, CUDA graphs, speed.

Each section prints PASS / FAIL / SKIP with its figures; the exit status is 1 if any section failed.

1. bf16 parity with transformers' Qwen2.5-Omni on the same random weights: Thinker logits, Talker greedy codes,
   token2wav waveform (same noise).
2. The encoders' varlen attention: audio (clips of different lengths) and vision (two images) under `sdpa` and,
   where `flash_attn` is installed, `flash_attention_2`, against `eager`.
3. The background token2wav worker: `stream(background_token2wav=True)` gives the same audio as inline.
4. CUDA-graph decode: Thinker `generate` with a static cache compiled with `mode="reduce-overhead"` gives the same
   greedy tokens; tokens/s with and without.
5. Speed on a config with the 7B's widths and fewer layers: first audio, RTF per stage, Thinker decode tokens/s.

`--dry-run` runs every section on tiny shapes (float32, CPU allowed) to check the script itself; CUDA-only parts
are skipped there.
"""

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import torch

from thinker import model_inputs

RESULTS: list[tuple[str, str, str]] = []


def record(name: str, ok: bool | None, detail: str) -> None:
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    RESULTS.append((name, status, detail))
    print(f"[{status}] {name}: {detail}", flush=True)


def configs(kind: str) -> dict:
    """Official-format config dicts: `tiny` (dry run), `small` (parity on GPU) or `7b-widths` (4 layers each)."""
    from omni_hf.testing.tiny import tiny_talker_config_dict, tiny_thinker_config_dict, tiny_token2wav_config_dict

    size = "tiny" if kind == "tiny" else "small"
    thinker, talker, token2wav = (
        tiny_thinker_config_dict(size),
        tiny_talker_config_dict(size),
        tiny_token2wav_config_dict(size),
    )
    if kind == "7b-widths":
        text = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=4, num_attention_heads=28)
        text.update(num_key_value_heads=4, rope_parameters={"mrope_section": [16, 24, 24]})
        thinker = tiny_thinker_config_dict(
            "small",
            text_config=text,
            audio_config=dict(d_model=1280, encoder_layers=4, encoder_attention_heads=20, encoder_ffn_dim=5120),
            vision_config=dict(hidden_size=1280, depth=4, num_heads=16, intermediate_size=3420),
        )
        thinker["audio_config"]["output_dim"] = thinker["vision_config"]["out_hidden_size"] = 3584
        talker = tiny_talker_config_dict(
            "small", embedding_size=3584, hidden_size=896, intermediate_size=18944, num_hidden_layers=4
        )
        talker.update(num_attention_heads=12, num_key_value_heads=4, head_dim=128)
        talker["rope_parameters"]["mrope_section"] = [16, 24, 24]
        token2wav = tiny_token2wav_config_dict("small")
        token2wav["dit_config"].update(hidden_size=1024, num_hidden_layers=4, num_attention_heads=16, head_dim=64)
        token2wav["bigvgan_config"]["upsample_initial_channel"] = 1536
    return {"thinker_config": thinker, "talker_config": talker, "token2wav_config": token2wav}


def build(path: Path, kind: str) -> None:
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    from omni_hf.testing.tiny import TINY_SPEAKER_BOS, reinit_

    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(Qwen2_5OmniConfig(**configs(kind)))
    for part in (model.thinker, model.talker, model.token2wav):
        reinit_(part, std=0.05 if kind != "7b-widths" else 0.02)
    if kind == "7b-widths":
        model = model.to(torch.bfloat16)  # 2.7 B parameters: half the bytes to write and read
    model.save_pretrained(path)
    mel_dim = 80
    cond = model.config.token2wav_config.dit_config.enc_emb_dim
    speakers = {
        name: {"bos_token": bos, "cond": torch.randn(1, cond), "ref_mel": torch.randn(1, 300, mel_dim) - 5}
        for name, bos in TINY_SPEAKER_BOS.items()
    }
    torch.save(speakers, path / "spk_dict.pt")


def load_pair(path: Path, device: str, dtype: torch.dtype, attn: str | None = None):
    from transformers import Qwen2_5OmniForConditionalGeneration

    from omni_hf import OmniForConditionalGeneration

    kwargs = {"dtype": dtype} | ({"attn_implementation": attn} if attn else {})
    ours = OmniForConditionalGeneration.from_pretrained(path, **kwargs).to(device).eval()
    ours.token2wav.set_progress_bar_config(disable=True)
    reference = Qwen2_5OmniForConditionalGeneration.from_pretrained(path, **kwargs).to(device).eval()
    reference.load_speakers(path / "spk_dict.pt")
    return ours, reference


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().std().clamp_min(1e-6))


def to(batch: dict, device: str, dtype: torch.dtype) -> dict:
    return {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in batch.items()}


@torch.no_grad()
def check_parity(path: Path, device: str, dtype: torch.dtype, tol: float) -> None:
    from omni_hf.talker.talker_inputs import build_talker_inputs
    from speech import speech_code_filter

    ours, reference = load_pair(path, device, dtype)
    inputs = to(model_inputs(2.0), device, dtype)
    got, expected = ours.thinker(**inputs).logits, reference.thinker(**inputs).logits
    record("parity: thinker logits", relative(got, expected) <= tol, f"max diff / std {relative(got, expected):.4f}")
    ids = torch.tensor([[1001, *range(10, 40), 1002, 1001, 900]], device=device)
    out = ours.thinker.generate(
        input_ids=ids,
        max_new_tokens=8,
        min_new_tokens=8,
        do_sample=False,
        output_hidden_states=True,
        return_dict_in_generate=True,
        eos_token_id=None,
    )
    talker_inputs = build_talker_inputs(
        ours.thinker, ours.talker.config, ids, out.sequences, out.hidden_states, 1014, None, None
    )
    talker_inputs.pop("attention_mask")
    kwargs = dict(do_sample=False, max_new_tokens=40, min_new_tokens=40, repetition_penalty=1.0)
    kwargs.update(eos_token_id=8294, pad_token_id=8292, logits_processor=speech_code_filter())
    mine = ours.talker.generate(**{**talker_inputs, "inputs_embeds": talker_inputs["inputs_embeds"].clone()}, **kwargs)
    reference.talker.rope_deltas = None
    theirs = reference.talker.generate(
        **{**talker_inputs, "inputs_embeds": talker_inputs["inputs_embeds"].clone()}, **kwargs
    )
    agree = float((mine == theirs).float().mean())
    record("parity: talker greedy codes", agree >= (0.999 if dtype == torch.float32 else 0.8), f"{agree:.1%} equal")
    codes = torch.randint(0, 8192, (1, 60), generator=torch.Generator().manual_seed(1)).to(device)
    speaker = ours.speakers["Chelsie"]
    torch.manual_seed(11)
    if device.startswith("cuda"):
        torch.cuda.manual_seed(11)
    ref_wave = reference.token2wav(
        codes,
        conditioning=speaker.speaker_embedding.to(device, dtype),
        reference_mel=speaker.reference_mel.to(device, dtype),
    )
    generator = torch.Generator(device).manual_seed(11)
    wave = ours.token2wav(
        codes, reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding, generator=generator
    ).audios
    wave = torch.as_tensor(wave).reshape(-1).to(ref_wave.device)
    diff = relative(wave, ref_wave.reshape(-1))
    record("parity: waveform (same noise)", diff <= tol * 4, f"max diff / std {diff:.4f}")


@torch.no_grad()
def check_attention(path: Path, device: str, dtype: torch.dtype, tol: float) -> None:
    from omni_hf import OmniThinkerForConditionalGeneration

    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 128, 400, generator=g).to(device, dtype)
    mask = (torch.arange(400) < torch.tensor([[400], [230]])).long().to(device)
    pixels = torch.randn(8 * 12 + 6 * 10, 1176, generator=g).to(device, dtype)
    grid = torch.tensor([[1, 8, 12], [1, 6, 10]], device=device)
    outputs = {}
    impls = ["eager", "sdpa"] + (["flash_attention_2"] if importlib.util.find_spec("flash_attn") else [])
    for impl in impls:
        try:
            model = OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=dtype, attn_implementation=impl)
            model = model.to(device).eval()
            outputs[impl] = (model.get_audio_features(features, mask), model.get_image_features(pixels, grid))
        except Exception as error:  # noqa: BLE001 (reported as a failed section)
            record(f"encoders: {impl}", False, f"{type(error).__name__}: {error}")
    base = outputs.get("eager")
    for impl, (audio, image) in outputs.items():
        if impl == "eager" or base is None:
            continue
        a, v = relative(audio, base[0]), relative(image, base[1])
        record(f"encoders: {impl} varlen vs eager", max(a, v) <= tol, f"audio {a:.4f}, vision {v:.4f}")
    if "flash_attention_2" not in impls:
        record("encoders: flash_attention_2", None, "flash_attn is not installed")


def reply_kwargs(model, codes: int, text_tokens: int = 12) -> dict:
    from speech import fixed_reply_kwargs, speech_code_filter

    kwargs = fixed_reply_kwargs(codes, text_tokens)
    model.talker.generation_config.suppress_tokens = speech_code_filter()[0].suppress_tokens.tolist()
    return kwargs


def prompt(device: str) -> dict:
    ids = torch.tensor([[1001, *range(10, 60), 1002, 1001, 900]], device=device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def check_worker(path: Path, device: str, dtype: torch.dtype) -> None:
    import numpy as np

    from omni_hf import OmniForConditionalGeneration
    from omni_hf.omni import AudioChunk

    model = OmniForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()
    waves = {}
    for background in (False, True):
        events = model.stream(
            **prompt(device),
            background_token2wav=background,
            generator=torch.Generator(device).manual_seed(0),
            **reply_kwargs(model, 150),
        )
        waves[background] = np.concatenate([e.audio for e in events if isinstance(e, AudioChunk)])
    same = waves[False].shape == waves[True].shape and np.abs(waves[False] - waves[True]).max() <= 1e-3
    record("background token2wav worker", bool(same), f"{waves[True].size / 24000:.2f} s of audio, equal to inline")


@torch.no_grad()
def check_cuda_graphs(path: Path, device: str, dtype: torch.dtype) -> None:
    """CUDA-graph decode on CUDA (transformers' compiled loop); on CPU the compiled lean step instead."""
    from transformers import CompileConfig

    from omni_hf import OmniThinkerForConditionalGeneration

    model = OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()
    ids = prompt(device)
    gen = dict(max_new_tokens=64, do_sample=False, eos_token_id=None, pad_token_id=0)
    plain = model.generate(**ids, **gen)
    cuda = device.startswith("cuda")
    mode = "reduce-overhead" if cuda else "default"
    graphs = dict(cache_implementation="static", compile_config=CompileConfig(mode=mode))
    start = time.perf_counter()
    compiled = model.generate(**ids, **gen, **graphs)
    warmup = time.perf_counter() - start
    speeds = {}
    for name, extra in (("eager", {}), ("compiled", graphs)):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(**ids, **gen, **extra)
        if cuda:
            torch.cuda.synchronize()
        speeds[name] = 64 / (time.perf_counter() - start)
    agree = float((plain == compiled).float().mean())
    record(
        "CUDA-graph decode" if cuda else "compiled decode step (CPU)",
        agree >= 0.95,
        f"{agree:.1%} tokens equal; {speeds['eager']:.1f} tok/s eager, {speeds['compiled']:.1f} tok/s compiled "
        f"(warm-up {warmup:.1f} s)",
    )


@torch.no_grad()
def check_speed(path: Path, device: str, dtype: torch.dtype, codes: int) -> None:
    from omni_hf import OmniForConditionalGeneration

    model = OmniForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()
    list(model.stream(**prompt(device), **reply_kwargs(model, 50)))  # warm-up
    stats = list(model.stream(**prompt(device), **reply_kwargs(model, codes)))[-1]
    gen = dict(max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0)
    model.thinker.generate(**prompt(device), **gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.thinker.generate(**prompt(device), **gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    tok_s = 32 / (time.perf_counter() - start)
    rtf = ", ".join(f"{k} {v:.3f}" for k, v in stats.rtf.items())
    record(
        "speed",
        stats.audio_seconds > 0,
        f"first audio {stats.time_to_first_audio:.3f} s, {stats.audio_seconds:.1f} s audio, RTF {rtf}; "
        f"thinker decode {tok_s:.1f} tok/s",
    )
    check_student_speed(model, device, codes)


@torch.no_grad()
def check_student_speed(model, device: str, codes: int, steps: int = 2) -> None:
    """The same streamed reply with a few-step token2wav student (a 2-step Euler student without guidance; its weights
    are an untrained copy of the teacher's: speed only) and CUDA-graph decode steps where transformers uses them."""
    import copy

    from omni_hf.training.token2wav_distill import student_pipeline

    teacher = model.token2wav.pipeline
    model.token2wav = student_pipeline(teacher, copy.deepcopy(teacher.dit), steps)
    model.token2wav.set_progress_bar_config(disable=True)
    try:
        list(model.stream(**prompt(device), **reply_kwargs(model, 50)))  # warm-up
        stats = list(model.stream(**prompt(device), **reply_kwargs(model, codes)))[-1]
    finally:
        model.token2wav = teacher
    rtf = ", ".join(f"{k} {v:.3f}" for k, v in stats.rtf.items())
    record(
        f"speed, {steps}-step token2wav student",
        stats.audio_seconds > 0,
        f"first audio {stats.time_to_first_audio:.3f} s, {stats.audio_seconds:.1f} s audio, RTF {rtf}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes, float32: checks the script on CPU")
    parser.add_argument("--codes", type=int, default=500, help="speech codes of the speed run (50 per second)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("No CUDA device: run with --device cpu --dry-run to check the script", file=sys.stderr)
        return 2
    dtype = torch.float32 if args.dry_run else torch.bfloat16
    tol = 1e-3 if dtype == torch.float32 else 0.05
    with tempfile.TemporaryDirectory() as tmp:
        small, wide = Path(tmp) / "parity", Path(tmp) / "speed"
        build(small, "tiny" if args.dry_run else "small")
        for name, section in (
            ("parity", lambda: check_parity(small, args.device, dtype, tol)),
            ("attention", lambda: check_attention(small, args.device, dtype, tol)),
            ("worker", lambda: check_worker(small, args.device, dtype)),
            ("cuda graphs", lambda: check_cuda_graphs(small, args.device, dtype)),
        ):
            try:
                section()
            except Exception as error:  # noqa: BLE001 (a crashing section is a failed check, the others still run)
                record(name, False, f"{type(error).__name__}: {error}")
        try:
            build(wide, "tiny" if args.dry_run else "7b-widths")
            check_speed(wide, args.device, dtype, 100 if args.dry_run else args.codes)
        except Exception as error:  # noqa: BLE001
            record("speed", False, f"{type(error).__name__}: {error}")
    failed = [name for name, status, _ in RESULTS if status == "FAIL"]
    print(f"\n{len(RESULTS)} checks, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
