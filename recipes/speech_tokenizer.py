"""Train an OmniSpeechTokenizer (audio → speech codes) by inverting the released token2wav decoder.

Qwen's codec encoder is not public, so voice fine-tunes on real recordings need a tokenizer. This recipe samples code
sequences (from the Talker on text prompts, or uniformly from a code set), synthesises them with the model's token2wav
across its speakers (with gain/noise augmentation), trains the tokenizer to recover the codes, and reports held-out
code accuracy and the round trip (audio → codes → audio) against random codes and the true codes.

A real checkpoint on a GPU (a few hours; the Talker supplies the codes real replies use):

    omni-hf convert Qwen/Qwen2.5-Omni-7B ./omni-7b
    python recipes/speech_tokenizer.py --config recipes/configs/speech_tokenizer.yaml --model ./omni-7b \
        --output_dir ./speech-tokenizer

The tiny CPU run (random demo model whose decoder is made code-sensitive; 8 codes in use; about 4 minutes):

    python -m omni_hf.testing.demo --out demo_assets          # builds demo_assets/tiny-omni
    python recipes/speech_tokenizer.py --config recipes/configs/speech_tokenizer_tiny.yaml

Then `recipes/voice_lora.py --speech_tokenizer ./speech-tokenizer` encodes a voice's recordings with it.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers.utils import logging

logger = logging.get_logger("omni_hf.recipes.speech_tokenizer")

PROMPTS = [
    "Please read this sentence aloud, clearly and slowly.",
    "Tell me about the weather today in two sentences.",
    "Count from one to ten, then say goodbye.",
    "Describe a quiet morning by the sea.",
]


def parse_args(argv=None) -> argparse.Namespace:
    from omni_hf.training.recipe_config import parse_with_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML file whose keys are these options (command-line flags win)")
    parser.add_argument("--model", help="omni_hf model directory (see `omni-hf convert`)")
    parser.add_argument("--output_dir", default="speech-tokenizer")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty output_dir (replaces only what this recipe wrote there; other files are kept)",
    )
    parser.add_argument("--code_source", default="talker", choices=["talker", "vocabulary", "uniform"])
    parser.add_argument("--vocabulary_size", type=int, default=64, help='codes in use with code_source "vocabulary"')
    parser.add_argument("--prompts", nargs="+", default=PROMPTS, help='texts for code_source "talker"')
    parser.add_argument("--num_train", type=int, default=20000, help="training sequences")
    parser.add_argument("--num_eval", type=int, default=256, help="held-out sequences")
    parser.add_argument("--sequence_length", type=int, default=250, help="codes per sequence (50 per second)")
    parser.add_argument("--num_inference_steps", type=int, default=10, help="token2wav ODE steps")
    parser.add_argument("--no_augment", action="store_true", help="train on clean synthesised audio")
    parser.add_argument("--stand_in_decoder", action="store_true", help="tiny random models: make codes audible")
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--num_hidden_layers", type=int, default=6)
    parser.add_argument("--num_attention_heads", type=int, default=8)
    parser.add_argument("--intermediate_size", type=int, default=2048)
    parser.add_argument("--max_steps", type=int, default=20000)
    parser.add_argument("--max_seconds", type=float, help="stop training after this much wall time")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--repo_id", help="Hub repo for --push_to_hub")
    return parse_with_config(parser, argv, required=("model",))


def code_sequences(args, model, processor, count: int, generator: torch.Generator) -> list[torch.Tensor]:
    from omni_hf.training import speech_tokenizer_training as tt

    if args.code_source != "talker":
        vocabulary = tt.make_code_vocabulary(args.vocabulary_size, seed=args.seed)
        return tt.sample_code_sequences(
            count, args.sequence_length, args.code_source, generator=generator, code_vocabulary=vocabulary
        )
    prompts = []
    for text in args.prompts:
        conversation = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        ids = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=True)
        prompts.append(torch.tensor([ids["input_ids"]]).reshape(1, -1))
    return tt.sample_code_sequences(count, args.sequence_length, "talker", model=model, prompts=prompts)


def write_card(directory: Path, args, scores: dict) -> None:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="omni_hf", tags=["omni_hf", "qwen2.5-omni", "speech-tokenizer", "audio"])
    table = "\n".join(f"| {key} | {value:.4f} |" for key, value in scores.items() if isinstance(value, float))
    content = (
        f"---\n{data.to_yaml()}\n---\n\n# OmniSpeechTokenizer\n\nAudio → Qwen2.5-Omni speech codes (50 per second), "
        f"trained by inverting the token2wav decoder of `{args.model}` with omni_hf's `recipes/speech_tokenizer.py` "
        f"(codes from `{args.code_source}`, {args.num_train} sequences of {args.sequence_length} codes).\n\n"
        f"## Held-out scores\n\n| metric | value |\n|---|---|\n{table}\n\n"
        "`roundtrip_l1*`: log-mel L1 after re-decoding predicted / random / true codes (lower is better).\n\n"
        "```python\nfrom omni_hf.voices.speech_tokenizer import OmniSpeechTokenizer\n\n"
        'tokenizer = OmniSpeechTokenizer.from_pretrained("PATH_OR_REPO")\n'
        "codes = tokenizer.encode(waveform, sampling_rate=16000)\n```\n"
    )
    ModelCard(content).save(directory / "README.md")


def main(argv=None) -> dict:
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.common.staged_save import staged_save
    from omni_hf.processing import OmniProcessor
    from omni_hf.testing.tiny import make_codes_audible_
    from omni_hf.training import speech_tokenizer_training as tt
    from omni_hf.training.recipe_config import check_output_dir
    from omni_hf.voices.speech_tokenizer import OmniSpeechTokenizer, OmniSpeechTokenizerConfig

    args = parse_args(argv)
    output = check_output_dir(args.output_dir, args.overwrite)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = OmniForConditionalGeneration.from_pretrained(args.model).eval()
    if model.token2wav is None:
        raise SystemExit(f"{args.model} has no token2wav decoder: the tokenizer is trained by inverting it")
    model.token2wav.set_progress_bar_config(disable=True)
    if args.stand_in_decoder:
        make_codes_audible_(model.token2wav.dit, seed=args.seed)
    processor = OmniProcessor.from_pretrained(args.model) if args.code_source == "talker" else None

    start = time.perf_counter()
    sequences = code_sequences(args, model, processor, args.num_train + args.num_eval, generator)
    augmentation = None if args.no_augment else tt.Augmentation()
    train = tt.synthesize(
        model,
        sequences[: args.num_train],
        augmentation=augmentation,
        generator=generator,
        num_inference_steps=args.num_inference_steps,
    )
    held_out = tt.synthesize(
        model, sequences[args.num_train :], generator=generator, num_inference_steps=args.num_inference_steps
    )
    synth_seconds = time.perf_counter() - start

    config = OmniSpeechTokenizerConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=max(1500, args.sequence_length),
    )
    tokenizer = OmniSpeechTokenizer(config).to(model.device)
    before = tt.code_accuracy(tokenizer, held_out)
    start = time.perf_counter()
    losses = tt.train_tokenizer(
        tokenizer,
        train,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    vocabulary = (
        tt.make_code_vocabulary(args.vocabulary_size, seed=args.seed) if args.code_source == "vocabulary" else None
    )
    scores = tt.evaluate(
        tokenizer, model, held_out, baseline_vocabulary=vocabulary, num_inference_steps=args.num_inference_steps
    )
    scores |= {
        "code_accuracy_untrained": before,
        "first_loss": losses[0],
        "last_loss": sum(losses[-20:]) / len(losses[-20:]),
        "steps": len(losses),
        "synthesis_seconds": round(synth_seconds, 1),
        "training_seconds": round(time.perf_counter() - start, 1),
    }

    # Staged (written beside the destination, then moved in): an interrupted save leaves the old output; with
    # --overwrite only the files this recipe wrote last time are replaced, the user's other files are kept.
    with staged_save(output, "speech_tokenizer") as staging:
        tokenizer.save_pretrained(staging)
        (staging / "metrics.json").write_text(json.dumps(scores, indent=2) + "\n")
        write_card(staging, args, scores)
    scores["output_dir"] = str(output)
    if args.push_to_hub:
        from omni_hf.training.recipe_config import push_output

        scores["pushed_to"] = push_output(output, args.repo_id, "OmniSpeechTokenizer")
    print(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)
