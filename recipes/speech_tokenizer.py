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

Training runs on transformers' `Trainer`: every `TrainingArguments` field is a flag (`--warmup_steps`,
`--report_to`, ...); `--push_to_hub --hub_model_id you/speech-tokenizer` publishes the result with its card.

Then `recipes/voice_lora.py --speech_tokenizer ./speech-tokenizer` encodes a voice's recordings with it.
"""

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from omni_hf.training.recipe_config import OutputArguments, parse_recipe_args
from omni_hf.training.speech_tokenizer_training import PROMPTS

TRAINING_DEFAULTS = {
    "output_dir": "speech-tokenizer",
    "max_steps": 20000,
    "per_device_train_batch_size": 16,
    "learning_rate": 1e-3,
    "weight_decay": 0.01,
    "warmup_steps": 0.0025,  # < 1: a ratio of the steps (50 of 20 000)
    "lr_scheduler_type": "cosine",
    "logging_steps": 0.01,  # < 1: a ratio of the steps
    "save_strategy": "no",
    "seed": 0,
    "remove_unused_columns": False,
}


@dataclass
class SpeechTokenizerArguments(OutputArguments):
    """Data and tokenizer-size options (the training options are `TrainingArguments`' own)."""

    model: str | None = field(default=None, metadata={"help": "omni_hf model directory (see `omni-hf convert`)"})
    code_source: str = field(default="talker", metadata={"choices": ["talker", "vocabulary", "uniform"]})
    vocabulary_size: int = field(default=64, metadata={"help": 'codes in use with code_source "vocabulary"'})
    prompts: list[str] = field(default_factory=lambda: list(PROMPTS), metadata={"help": 'texts for "talker"'})
    num_train: int = field(default=20000, metadata={"help": "training sequences"})
    num_eval: int = field(default=256, metadata={"help": "held-out sequences"})
    sequence_length: int = field(default=250, metadata={"help": "codes per sequence (50 per second)"})
    num_inference_steps: int = field(default=10, metadata={"help": "token2wav ODE steps"})
    no_augment: bool = field(default=False, metadata={"help": "train on clean synthesised audio"})
    stand_in_decoder: bool = field(default=False, metadata={"help": "tiny random models: make codes audible"})
    hidden_size: int = 512
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    max_seconds: float | None = field(default=None, metadata={"help": "stop training after this much wall time"})


def parse_args(argv=None) -> tuple[SpeechTokenizerArguments, TrainingArguments]:
    types = (SpeechTokenizerArguments, TrainingArguments)
    return parse_recipe_args(types, argv, defaults=TRAINING_DEFAULTS, required=("model",))


def main(argv=None) -> dict:
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.common.staged_save import staged_save
    from omni_hf.processing import OmniProcessor
    from omni_hf.testing.tiny import make_codes_audible_
    from omni_hf.training import speech_tokenizer_training as tt
    from omni_hf.training.recipe_config import check_output_dir, trainer_arguments
    from omni_hf.voices.speech_tokenizer import OmniSpeechTokenizer, OmniSpeechTokenizerConfig

    args, training = parse_args(argv)
    output = check_output_dir(training.output_dir, args.overwrite)
    torch.manual_seed(training.seed)
    generator = torch.Generator().manual_seed(training.seed)
    model = OmniForConditionalGeneration.from_pretrained(args.model).eval()
    if model.token2wav is None:
        raise SystemExit(f"{args.model} has no token2wav decoder: the tokenizer is trained by inverting it")
    model.token2wav.set_progress_bar_config(disable=True)
    if args.stand_in_decoder:
        make_codes_audible_(model.token2wav.dit, seed=training.seed)
    processor = OmniProcessor.from_pretrained(args.model) if args.code_source == "talker" else None

    start = time.perf_counter()
    sequences = tt.recipe_code_sequences(
        args.code_source, args.num_train + args.num_eval, args.sequence_length, generator,
        vocabulary_size=args.vocabulary_size, seed=training.seed, model=model, processor=processor,
        prompts=args.prompts,
    )  # fmt: skip
    steps = args.num_inference_steps
    augmentation = None if args.no_augment else tt.Augmentation()
    train_sequences, held_out_sequences = sequences[: args.num_train], sequences[args.num_train :]
    train = tt.synthesize(
        model, train_sequences, augmentation=augmentation, generator=generator, num_inference_steps=steps
    )
    held_out = tt.synthesize(model, held_out_sequences, generator=generator, num_inference_steps=steps)
    synth_seconds = time.perf_counter() - start

    config = OmniSpeechTokenizerConfig(
        hidden_size=args.hidden_size, num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads, intermediate_size=args.intermediate_size,
        max_position_embeddings=max(1500, args.sequence_length),
    )  # fmt: skip
    tokenizer = OmniSpeechTokenizer(config).to(model.device)
    before = tt.code_accuracy(tokenizer, held_out)
    start = time.perf_counter()
    # The Trainer works in a scratch folder beside the destination; the result is saved staged below.
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".speech-tokenizer-", dir=output.parent))
    try:
        trainer = tt.fit_tokenizer(
            tokenizer, train, trainer_arguments(training, output_dir=str(staging)), args.max_seconds
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    losses = tt.logged_losses(trainer)
    vocabulary = tt.make_code_vocabulary(args.vocabulary_size, seed=training.seed)
    vocabulary = vocabulary if args.code_source == "vocabulary" else None
    scores = tt.evaluate(tokenizer, model, held_out, baseline_vocabulary=vocabulary, num_inference_steps=steps)
    scores |= {
        "code_accuracy_untrained": before,
        "first_loss": losses[0],
        "last_loss": sum(losses[-20:]) / len(losses[-20:]),
        "steps": trainer.state.global_step,
        "synthesis_seconds": round(synth_seconds, 1),
        "training_seconds": round(time.perf_counter() - start, 1),
    }
    shutil.rmtree(staging, ignore_errors=True)  # the Trainer's scratch folder (no checkpoints are kept)
    # Staged (written beside the destination, then moved in): an interrupted save leaves the old output; with
    # --overwrite only the files this recipe wrote last time are replaced, the user's other files are kept.
    with staged_save(output, "speech_tokenizer") as stage:
        tokenizer.save_pretrained(stage)
        (Path(stage) / "metrics.json").write_text(json.dumps(scores, indent=2) + "\n")
        card = tt.tokenizer_card(args.model, args.code_source, args.num_train, args.sequence_length, scores)
        card.save(Path(stage) / "README.md")
    scores["output_dir"] = str(output)
    if training.push_to_hub:
        from omni_hf.hub import publish

        hub = dict(token=training.hub_token, private=training.hub_private_repo, commit_message="OmniSpeechTokenizer")
        scores["pushed_to"] = publish(training.hub_model_id, [tokenizer], card, **hub).commit_url
    print(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    from omni_hf.training.recipe_config import run_recipe

    run_recipe(main)
