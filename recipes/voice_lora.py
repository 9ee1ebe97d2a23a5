"""Train a LoRA voice adapter on the Talker from recordings of one speaker, and save it under a voice name.

Data: a JSON-lines manifest, one utterance per line, either `{"text": "...", "audio": "clip.wav"}` (the speech codes
come from a speech tokenizer, `--speech_tokenizer`; see recipes/speech_tokenizer.py) or `{"text": "...", "codes":
[...]}` (with or without its audio). Rows whose audio cannot be decoded are skipped and counted. With `--dit_lora`
a second adapter of the same voice name is trained on token2wav's DiT (flow-matching loss on the rows' audio), so the
timbre follows the recordings too; `model.voice_adapters.load` loads both parts.

A real checkpoint on a GPU:

    omni-hf convert Qwen/Qwen2.5-Omni-7B ./omni-7b
    python recipes/voice_lora.py --config recipes/configs/voice_lora.yaml --model ./omni-7b \
        --data my_voice/metadata.jsonl --speech_tokenizer ./speech-tokenizer --voice alice --output_dir voices/alice

The tiny CPU run (a stand-in "voice" that only uses 64 of the 8193 codes; about a minute):

    python -m omni_hf.testing.demo --out demo_assets          # builds demo_assets/tiny-omni
    python recipes/voice_lora.py --config recipes/configs/voice_lora_tiny.yaml

Every `TrainingArguments` field of the Talker part is a flag (`--warmup_steps`, `--report_to`, ...);
`--push_to_hub --hub_model_id you/voice-alice` publishes the adapter with its card.

Then: `model.voice_adapters.load("voices/alice")` and `model.generate(..., voice_adapter="alice")` / `model.stream(..., voice_adapter="alice")`.
"""

import json
from dataclasses import dataclass, field

import torch
from accelerate import PartialState
from transformers import TrainingArguments

from omni_hf.training.recipe_config import OutputArguments, parse_recipe_args

TRAINING_DEFAULTS = {
    "output_dir": "voice-lora",
    "max_steps": 200,
    "learning_rate": 2e-4,
    "per_device_train_batch_size": 4,
    "logging_steps": 10,
    "save_steps": 100,
    "save_total_limit": 2,
    "seed": 0,
    "remove_unused_columns": False,
}


@dataclass
class VoiceLoraArguments(OutputArguments):
    """Model, data and adapter options (the Talker part's training options are `TrainingArguments`' own)."""

    model: str | None = field(default=None, metadata={"help": "omni_hf model directory (see `omni-hf convert`)"})
    data: str | None = field(default=None, metadata={"help": "JSON-lines manifest, or `synthetic:N` (tiny runs)"})
    voice: str = field(default="voice", metadata={"help": "name of the adapter"})
    speaker: str = field(default="Chelsie", metadata={"help": "base speaker (bos entry and DiT conditioning)"})
    speech_tokenizer: str | None = field(default=None, metadata={"help": "OmniSpeechTokenizer, for audio rows"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (Talker and DiT parts)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    dit_lora: bool = field(default=False, metadata={"help": "also train a DiT adapter on the rows' audio"})
    dit_max_steps: int = field(default=500, metadata={"help": "DiT part: training steps"})
    dit_learning_rate: float = field(default=1e-4, metadata={"help": "DiT part: learning rate"})


def parse_args(argv=None) -> tuple[VoiceLoraArguments, TrainingArguments]:
    return parse_recipe_args(
        (VoiceLoraArguments, TrainingArguments), argv, defaults=TRAINING_DEFAULTS, required=("model", "data")
    )


def main(argv=None) -> dict:
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.recipe_config import check_output_dir, trainer_arguments
    from omni_hf.training.voice_lora import code_share, load_rows, train_voice_adapter, voice_examples
    from omni_hf.voices.adapters import voice_lora_config

    args, training = parse_args(argv)
    output = check_output_dir(training.output_dir, args.overwrite, args.resume)
    torch.manual_seed(training.seed)
    rows = load_rows(args.data, args.speech_tokenizer, training.seed)  # bad data is named before the model loads
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
        trainer_arguments(training, output_dir=str(output / "checkpoints")),
        lora_config=voice_lora_config(r=args.lora_r, alpha=args.lora_alpha),
        resume_from_checkpoint=True if args.resume else None,
    )
    if args.dit_lora:
        from omni_hf.training.dit_lora import dit_voice_example, train_dit_voice_adapter

        with_audio = [r for r in rows if "waveform" in r]
        if not with_audio:
            raise SystemExit("--dit_lora trains on the rows' audio, and no row has audio")
        dit_examples = [dit_voice_example(r["waveform"], r["sampling_rate"], r["codes"]) for r in with_audio]
        metrics |= train_dit_voice_adapter(
            model, dit_examples, args.voice, args.speaker, r=args.lora_r, alpha=args.lora_alpha,
            max_steps=args.dit_max_steps, learning_rate=args.dit_learning_rate,
            batch_size=training.per_device_train_batch_size, seed=training.seed,
        )  # fmt: skip
    state = PartialState()
    if not state.is_main_process:  # under several processes only the main one writes, measures and pushes
        state.wait_for_everyone()
        return metrics
    saved = model.voice_adapters.save(args.voice, output)
    metrics["adapter_dir"] = str(saved)
    if synthetic:
        metrics["voice_code_share_before"] = before
        metrics["voice_code_share_after"] = code_share(model, processor, args.voice)
    if training.push_to_hub:
        from omni_hf.hub import push_voice_adapter

        figures = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        hub = dict(token=training.hub_token, private=training.hub_private_repo)
        info = push_voice_adapter(model, args.voice, training.hub_model_id, results={"voice": figures}, **hub)
        metrics["pushed_to"] = info.commit_url
    print(json.dumps(metrics, indent=2))
    state.wait_for_everyone()
    return metrics


if __name__ == "__main__":
    from omni_hf.training.recipe_config import run_recipe

    run_recipe(main)
