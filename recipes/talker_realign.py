"""Talker re-alignment after Thinker fine-tuning: the Talker learns to speak the fine-tuned Thinker's replies as the
original model would (original Talker on the original Thinker = teacher, its greedy codes = teacher-forced targets).

Fine-tuning the Thinker (recipes/sft.py) moves the hidden states the Talker reads, and the original Talker's speech
of the new replies drifts. This recipe trains a LoRA adapter (`--use_peft`) or the whole Talker on the fine-tuned
Thinker's track and prints the share of codes that match the teacher: original pair, after the SFT, re-aligned.

    python recipes/sft.py --config recipes/configs/sft.yaml --model ./omni-7b --output_dir sft-thinker
    accelerate launch recipes/talker_realign.py --config recipes/configs/talker_realign.yaml \
        --model ./omni-7b --thinker sft-thinker --prompts my_prompts.jsonl --output_dir realigned

Tiny CPU run (random demo model; the thinker may be any fine-tuned copy of it):

    python recipes/talker_realign.py --config recipes/configs/talker_realign_tiny.yaml --thinker runs/sft_tiny

`--prompts`: a .txt (one text per line, spoken as given), a .jsonl (`{"conversation": [...], "reply": ...}`; without
"reply" the fine-tuned Thinker answers), or synthetic:N. Output: `final/<adapter_name>/` (the adapter, loadable
with `model.voice_adapters.load`) or with full fine-tuning `final/` (the whole model: fine-tuned Thinker + re-aligned
Talker), each with its card, and `realign_metrics.json`.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers.utils import logging

from omni_hf.training.recipe_config import OutputArguments, parse_recipe_args

logger = logging.get_logger("omni_hf.recipes.talker_realign")


@dataclass
class TalkerRealignArguments(OutputArguments):
    """Options of the re-alignment recipe (`--config` YAML keys are the same names; flags win)."""

    thinker: str | None = field(
        default=None,
        metadata={"help": "the fine-tuned Thinker: a recipes/sft.py output folder or a full model folder"},
    )
    model: str | None = field(
        default=None, metadata={"help": "the ORIGINAL omni_hf model directory (its Thinker and Talker teach)"}
    )
    prompts: str | None = field(
        default=None, metadata={"help": "a .txt, a .jsonl (conversation + reply) or synthetic:N"}
    )
    talker_max_new_tokens: int = field(default=600, metadata={"help": "longest teacher speech (codes)"})
    speaker: str = field(default="Chelsie", metadata={"help": "speaker the Talker speaks as"})
    use_peft: bool = field(default=False, metadata={"help": "train a LoRA adapter (else the full Talker)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    adapter_name: str = field(default="realigned", metadata={"help": "name of the trained adapter"})
    max_steps: int = field(default=500, metadata={"help": "optimizer steps"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "examples per step (or --batch_size)"})
    logging_steps: int = field(default=10, metadata={"help": "log every N steps"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    base_model: str | None = field(
        default=None, metadata={"help": "Hub id of the original model for the card (default: --model if an id)"}
    )
    log_level: str | None = field(
        default=None,
        metadata={"help": "debug, info, warning, error or critical (default: TRANSFORMERS_VERBOSITY, else warning)"},
    )
    output_dir: str = field(default="talker-realign", metadata={"help": "where the result is written"})


def parse_args(argv=None) -> TalkerRealignArguments:
    (args,) = parse_recipe_args((TalkerRealignArguments,), argv, required=("model", "thinker", "prompts"))
    return args


def main(argv=None) -> dict:
    import torch
    from transformers import set_seed

    from omni_hf import OmniForConditionalGeneration
    from omni_hf.processing import OmniProcessor
    from omni_hf.training.pair_sources import read_prompts
    from omni_hf.training.realign import load_thinker, realign_talker
    from omni_hf.training.recipe_config import check_output_dir
    from omni_hf.training.recipe_logging import apply_log_level, trainer_log_level
    from omni_hf.voices.adapters import voice_lora_config

    args = parse_args(argv)
    apply_log_level(args.log_level)
    prompts = read_prompts(args.prompts)
    output = check_output_dir(args.output_dir, args.overwrite)
    set_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = OmniForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(device).eval()
    processor = OmniProcessor.from_pretrained(args.model)
    tuned = load_thinker(args.thinker, dtype=dtype).to(device)
    lora = voice_lora_config(r=args.lora_r, alpha=args.lora_alpha) if args.use_peft else None
    metrics = realign_talker(
        model, processor, prompts, tuned, output / "checkpoints", lora_config=lora, adapter_name=args.adapter_name,
        speaker=args.speaker, max_new_tokens=args.talker_max_new_tokens, max_steps=args.max_steps,
        learning_rate=args.learning_rate, batch_size=args.per_device_train_batch_size, seed=args.seed,
        logging_steps=args.logging_steps, save_strategy="no", log_level=trainer_log_level(args.log_level),
    )  # fmt: skip
    from omni_hf.training.card_figures import realign_results, write_card

    final = output / "final"
    base = args.base_model or (args.model if "/" in args.model and not Path(args.model).exists() else None)
    if args.use_peft:
        saved = model.voice_adapters.save(args.adapter_name, final)
        card = model.voice_adapters.card(
            args.adapter_name, f"YOUR_USER/{args.adapter_name}", results=realign_results(metrics), base_model=base,
            heading=f"Re-aligned Talker adapter `{args.adapter_name}`", trained_with="Talker re-alignment recipe",
        )  # fmt: skip
    else:
        saved = final
        model.save_pretrained(final)
        processor.save_pretrained(final)
        from omni_hf.hub.cards import count_parameters, render_card

        card = render_card(
            "model", "YOUR_USER/omni-realigned", results=realign_results(metrics), base_model=base,
            title="Qwen2.5-Omni with a fine-tuned Thinker and a re-aligned Talker", speakers=model.speakers.names(),
            speaker=args.speaker, thinker_parameters=count_parameters(model.thinker),
            talker_parameters=count_parameters(model.talker), token2wav_parameters="unchanged",
        )  # fmt: skip
    write_card(card, saved)
    metrics["saved"] = str(saved)
    (output / "realign_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    from omni_hf.training.recipe_config import run_recipe

    run_recipe(main)
