"""Train a LoRA voice adapter on the Talker from recordings of one speaker, and save it under a voice name.

Data: a JSON-lines manifest, one utterance per line, either `{"text": "...", "audio": "clip.wav"}` (the speech codes
come from a speech tokenizer, `--speech_tokenizer`; see recipes/speech_tokenizer.py) or `{"text": "...", "codes":
[...]}` (with or without its audio). Rows whose audio cannot be decoded are skipped and counted. With `--dit_lora`
a second adapter of the same voice name is trained on token2wav's DiT (flow-matching loss on the rows' audio), so the
timbre follows the recordings too; `model.voices.load` loads both parts.

A real checkpoint on a GPU:

    omni-hf convert Qwen/Qwen2.5-Omni-7B ./omni-7b
    python recipes/voice_lora.py --config recipes/configs/voice_lora.yaml --model ./omni-7b \
        --data my_voice/metadata.jsonl --speech_tokenizer ./speech-tokenizer --voice alice --output_dir voices/alice

The tiny CPU run (a stand-in "voice" that only uses 64 of the 8193 codes; about a minute):

    python -m omni_hf.testing.demo --out demo_assets          # builds demo_assets/tiny-omni
    python recipes/voice_lora.py --config recipes/configs/voice_lora_tiny.yaml

Then: `model.voices.load("voices/alice")` and `model.generate(..., voice="alice")` / `model.stream(..., voice="alice")`.
"""

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from transformers.utils import logging

logger = logging.get_logger("omni_hf.recipes.voice_lora")


def parse_args(argv=None) -> argparse.Namespace:
    from omni_hf.training.recipe_config import parse_with_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file whose keys are these options (command-line flags win)")
    parser.add_argument("--model", help="omni_hf model directory (see `omni-hf convert`)")
    parser.add_argument("--data", help="JSON-lines manifest, or `synthetic:N` for the tiny stand-in voice")
    parser.add_argument("--voice", default="voice", help="name of the adapter")
    parser.add_argument("--speaker", default="Chelsie", help="base speaker (bos entry and DiT conditioning)")
    parser.add_argument("--speech_tokenizer", help="OmniSpeechTokenizer directory, for rows with audio")
    parser.add_argument("--output_dir", default="voice-lora")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty output_dir")
    parser.add_argument("--max_steps", type=int, default=200)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--lora_alpha", type=int, default=32)
    parser.add_argument("--dit_lora", action="store_true", help="also train a DiT adapter on the rows' audio")
    parser.add_argument("--dit_max_steps", type=int, default=500)
    parser.add_argument("--dit_learning_rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--repo_id", help="Hub repo for --push_to_hub")
    return parse_with_config(parser, argv, required=("model", "data"))


def synthetic_rows(count: int, seed: int, vocabulary: int = 64) -> list[dict]:
    """A stand-in voice for CPU runs: its speech only uses `vocabulary` codes (a voice-specific code distribution)."""
    rng = random.Random(seed)
    return [
        {"text": f"sentence number {i}", "codes": [rng.randrange(vocabulary) for _ in range(24)]} for i in range(count)
    ]


def load_rows(data: str, speech_tokenizer: str | None, seed: int) -> list[dict]:
    """Rows `{"text", "codes"}`, plus `"waveform"` and `"sampling_rate"` where the row has audio (the DiT part
    trains on those). Rows whose audio cannot be decoded are skipped and counted."""
    from omni_hf.training.recipe_inputs import read_jsonl, synthetic_count

    if data.startswith("synthetic:"):
        return synthetic_rows(synthetic_count(data), seed)
    import soundfile

    manifest = Path(data)
    rows = read_jsonl(manifest)  # a malformed line is named by file and line
    tokenizer, skipped, ready = None, 0, []
    for i, row in enumerate(rows):
        if "text" not in row or not ({"codes", "audio"} & set(row)):
            raise ValueError(f"{data} row {i} needs 'text' and either 'codes' or 'audio', got {sorted(row)}")
        if "codes" not in row and speech_tokenizer is None:
            raise ValueError(f"{data} row {i} has audio but no codes: pass --speech_tokenizer to encode it")
        item = {"text": row["text"]}
        if "audio" in row:
            try:
                audio, rate = soundfile.read(manifest.parent / row["audio"], dtype="float32", always_2d=True)
            except Exception as error:  # undecodable: skipped and counted
                logger.warning(f"Skipping row {i}: cannot decode {row['audio']!r} ({error})")
                skipped += 1
                continue
            item |= {"waveform": audio.mean(axis=1), "sampling_rate": rate}
        if "codes" in row:
            item["codes"] = list(row["codes"])
        else:
            if tokenizer is None:
                from omni_hf.voices.speech_tokenizer import OmniSpeechTokenizer

                tokenizer = OmniSpeechTokenizer.from_pretrained(speech_tokenizer).eval()
            item["codes"] = tokenizer.encode(item["waveform"], item["sampling_rate"]).tolist()
        ready.append(item)
    if skipped:
        logger.warning(f"Skipped {skipped} of {len(rows)} rows with undecodable audio")
    if not ready:
        raise ValueError(f"{data}: no usable rows ({skipped} undecodable)")
    return ready


@torch.no_grad()
def code_share(model, processor, voice: str | None, vocabulary: int = 64, prompts: int = 3) -> float:
    """Share of greedy speech codes inside the stand-in voice's code set (tiny runs: how much the voice took)."""
    from omni_hf.omni import StreamStats

    codes = []
    for i in range(prompts):
        conversation = [{"role": "user", "content": [{"type": "text", "text": f"Read this aloud: sentence {i}"}]}]
        inputs = processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        for event in model.stream(
            inputs["input_ids"],
            voice=voice,
            thinker_max_new_tokens=6,
            thinker_do_sample=False,
            talker_do_sample=False,
            talker_max_new_tokens=24,
            return_audio=True,
        ):
            if isinstance(event, StreamStats):
                codes += event.speech_code_ids
    return sum(c < vocabulary for c in codes) / max(len(codes), 1)


def _card_figures(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def main(argv=None) -> dict:
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.recipe_config import check_output_dir
    from omni_hf.training.voice_lora import train_voice_adapter, voice_examples
    from omni_hf.voices.adapters import voice_lora_config

    args = parse_args(argv)
    output = check_output_dir(args.output_dir, args.overwrite, args.resume)
    torch.manual_seed(args.seed)
    rows = load_rows(args.data, args.speech_tokenizer, args.seed)  # bad data is named before the model loads
    model = OmniForConditionalGeneration.from_pretrained(args.model).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    processor = OmniProcessor.from_pretrained(args.model)
    examples = voice_examples(model, processor, rows, args.speaker)
    synthetic = args.data.startswith("synthetic:")
    before = code_share(model, processor, None) if synthetic else None
    metrics = train_voice_adapter(
        model,
        examples,
        args.voice,
        str(output / "checkpoints"),
        lora_config=voice_lora_config(r=args.lora_r, alpha=args.lora_alpha),
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        resume_from_checkpoint=True if args.resume else None,
    )
    if args.dit_lora:
        from omni_hf.training.dit_lora import dit_voice_example, train_dit_voice_adapter

        with_audio = [r for r in rows if "waveform" in r]
        if not with_audio:
            raise SystemExit("--dit_lora trains on the rows' audio, and no row has audio")
        dit_examples = [dit_voice_example(r["waveform"], r["sampling_rate"], r["codes"]) for r in with_audio]
        metrics |= train_dit_voice_adapter(
            model,
            dit_examples,
            args.voice,
            args.speaker,
            r=args.lora_r,
            alpha=args.lora_alpha,
            max_steps=args.dit_max_steps,
            learning_rate=args.dit_learning_rate,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    saved = model.voices.save(args.voice, output)
    metrics["adapter_dir"] = str(saved)
    if synthetic:
        metrics["voice_code_share_before"] = before
        metrics["voice_code_share_after"] = code_share(model, processor, args.voice)
    if args.push_to_hub:
        from omni_hf.hub import push_voice_adapter

        info = push_voice_adapter(model, args.voice, args.repo_id, results={"voice": _card_figures(metrics)})
        metrics["pushed_to"] = info.commit_url
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)
