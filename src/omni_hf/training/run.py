"""The shared runner behind `recipes/*.py`: options (YAML + flags) → data → freezing → `Trainer` → save, card, push.

`run_stage("sft", ["--config", "recipes/configs/sft_tiny.yaml"])` runs a stage in this process; under
`accelerate launch` the same call runs data-parallel / FSDP / DeepSpeed (TrainingArguments reads the launcher's
environment). Returns a metrics dict (steps, first/last logged loss, parameter counts, data counts, output dir).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.masking_utils import create_causal_mask, packed_sequence_mask_function
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

from ..common.staged_save import write_text_atomic
from .recipe_config import OutputArguments, check_output_dir, option_value, parse_recipe_args, trainer_arguments
from .stages import STAGES, Stage, apply_freezing, get_stage

logger = logging.get_logger(__name__)


STAGE_TRAINING_DEFAULTS = {
    "lr_scheduler_type": "cosine",
    "logging_steps": 10,
    "save_total_limit": 2,
    "seed": 0,
    "remove_unused_columns": False,
    "activation_checkpointing_kwargs": {"use_reentrant": False},
}


@dataclass
class StageArguments(OutputArguments):
    """Model and data options of the stage recipes (the training options are `TrainingArguments`' own)."""

    stage: str | None = field(default=None, metadata={"help": f"stage to run (one of {list(STAGES)})"})
    model: str | None = field(
        default=None, metadata={"help": "omni_hf (or official Qwen2.5-Omni) checkpoint directory or Hub id"}
    )
    data: str | None = field(
        default=None, metadata={"help": "a .json/.jsonl/.csv/.parquet file, a save_to_disk folder, or a Hub dataset"}
    )
    base_model: str | None = field(
        default=None, metadata={"help": "Hub id of the base model for the card (default: --model if a Hub id)"}
    )
    split: str = field(default="train", metadata={"help": "dataset split"})
    max_samples: int | None = field(default=None, metadata={"help": "use only the first N rows"})
    max_length: int | None = field(default=None, metadata={"help": "tokens per sample (default: the stage's)"})
    too_long: str = field(
        default="drop", metadata={"help": "rule for over-long rows", "choices": ["drop", "truncate"]}
    )
    packing: bool | None = field(
        default=None, metadata={"help": "pack samples into max_length rows (default: the stage's)"}
    )
    use_audio_in_video: bool = field(default=True, metadata={"help": "interleave videos with their sound"})
    trainable: list[str] | None = field(
        default=None, metadata={"help": "parameter-name prefixes to train (overrides the stage)"}
    )
    speaker: str = field(default="Chelsie", metadata={"help": "talker_icl: the voice whose codes the rows hold"})
    prompt: str = field(default="Read this aloud: {text}", metadata={"help": "talker_icl: user prompt for text rows"})


def parse_args(
    stage_name: str, argv=None, allowed: tuple[str, ...] | None = None
) -> tuple[Stage, StageArguments, TrainingArguments]:
    """Parse flags over the YAML `--config` into the stage, its `StageArguments` and `TrainingArguments` (the
    stage's learning rate and warmup are the defaults); `stage:` may name another stage, checked against `allowed`."""
    stage = get_stage(option_value("stage", argv, stage_name), allowed)
    defaults = {**STAGE_TRAINING_DEFAULTS, "stage": stage.name}
    defaults |= {"learning_rate": stage.learning_rate, "warmup_steps": stage.warmup_ratio}
    script, training = parse_recipe_args(
        (StageArguments, TrainingArguments),
        argv,
        defaults=defaults,
        required=("model", "data", "output_dir"),
        description=stage.purpose,
    )
    return stage, script, training


class OmniStageTrainer(Trainer):
    """`Trainer` that turns `packed_sequence_ids` `(B, T)` into block-diagonal causal masks for the Thinker."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        segments = inputs.pop("packed_sequence_ids", None)
        if segments is not None:
            inputs["attention_mask"] = packed_attention_masks(self.accelerator.unwrap_model(model), inputs, segments)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def packed_attention_masks(model, inputs: dict, segments: torch.Tensor) -> dict:
    """The decoder's per-layer-type masks for packed rows: causal, within one sample, padding excluded."""
    text_config = model.config.text_config
    ids = inputs["input_ids"]
    embeds = torch.empty(*ids.shape, 1, dtype=model.dtype, device=ids.device)  # shape/dtype/device only
    mask = create_causal_mask(
        config=text_config,
        inputs_embeds=embeds,
        attention_mask=inputs["attention_mask"],
        cache=None,
        and_mask_function=packed_sequence_mask_function(segments),
    )
    return {layer_type: mask for layer_type in set(text_config.layer_types)}


def first_and_last_loss(trainer: Trainer) -> dict:
    """First and last training loss from the Trainer's log history."""
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def _check_output(script: StageArguments, training: TrainingArguments) -> Path:
    output = check_output_dir(training.output_dir, script.overwrite, script.resume)
    if script.resume and (not output.is_dir() or get_last_checkpoint(str(output)) is None):
        raise SystemExit(f"--resume: no checkpoint-* folder in {output} to resume from")
    return output


def _thinker_dataset(stage: Stage, args, processor):
    from .collator import pack_examples
    from .thinker_data import encode_rows, lengths_summary, load_rows

    max_length = args.max_length or stage.max_length
    dataset, base = load_rows(args.data, args.split, args.max_samples)
    examples, counts = encode_rows(processor, dataset, base, max_length, args.too_long, args.use_audio_in_video)
    packing = stage.packing if args.packing is None else args.packing
    if packing:
        examples = pack_examples(examples, max_length)
    return (
        examples,
        {"rows": len(dataset), **dict(counts), "packed_rows": len(examples) if packing else None},
        (lengths_summary(examples)),
    )


def build_talker_icl(args, processor):
    """The in-context stage's Talker examples: rows `{text, codes}` or `{messages, codes}` (text-only dialogue
    whose last turn is the assistant reply spoken as `codes`), teacher-forced through the frozen Thinker."""
    from collections import Counter

    from ..omni import OmniForConditionalGeneration
    from .talker_data import pad_talker_examples, talker_training_example
    from .thinker_data import load_rows
    from .voice_lora import voice_examples

    model = OmniForConditionalGeneration.from_pretrained(args.model)
    if not model.has_talker:
        raise ValueError(f"{args.model} has no Talker: talker_icl needs a full model (Thinker + Talker).")
    if args.speaker not in model.speakers:
        raise ValueError(f"Unknown speaker {args.speaker!r}: the model has {sorted(model.speakers)}.")
    model.eval()
    dataset, _ = load_rows(args.data, args.split, args.max_samples)
    max_length = args.max_length or get_stage("talker_icl").max_length
    examples, counts = [], Counter()
    bos = model.speakers[args.speaker].bos_token_id
    for index, row in enumerate(dataset):
        try:
            if row.get("messages"):
                examples.append(_dialogue_example(model, processor, row, bos, talker_training_example))
            elif row.get("text") and row.get("codes"):
                examples += voice_examples(model, processor, [row], args.speaker, args.prompt)
            else:
                raise ValueError(f"needs 'codes' and 'text' or 'messages', got keys {sorted(row)}")
        except ValueError as error:
            counts["malformed"] += 1
            logger.warning(f"Dropping row {index}: {error}")
            continue
        if examples[-1]["input_ids"].shape[1] > max_length:
            examples.pop()
            counts["too_long"] += 1
            continue
        counts["kept"] += 1
    logger.warning(f"Data: {len(dataset)} rows → {dict(counts)}")
    if not examples:
        raise ValueError(f"No usable talker_icl rows out of {len(dataset)} ({dict(counts)}).")
    return model, model.talker, examples, pad_talker_examples, {"rows": len(dataset), **dict(counts)}


def _dialogue_example(model, processor, row: dict, bos: int, make_example) -> dict:
    messages = [{k: v for k, v in m.items() if v is not None} for m in row["messages"]]
    if messages[-1].get("role") != "assistant" or not isinstance(messages[-1].get("content"), str):
        raise ValueError("the last message must be the assistant reply as a string (the text the codes speak)")
    if any(not isinstance(m.get("content"), str) for m in messages):
        raise ValueError("talker_icl dialogues take string contents only (media contexts are not encoded here)")
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    prompt_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    reply_ids = torch.tensor([tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]])
    return make_example(model, prompt_ids, reply_ids, torch.as_tensor(row["codes"]), bos)


def run_stage(stage_name: str, argv=None, allowed: tuple[str, ...] | None = None) -> dict:
    """Run one training stage end to end (see the module docstring); returns its metrics."""
    stage, args, training = parse_args(stage_name, argv, allowed)
    output = _check_output(args, training)
    torch.manual_seed(training.seed)
    from ..processing import OmniProcessor

    processor = OmniProcessor.from_pretrained(args.model)
    if stage.model == "talker":
        model, train_model, dataset, collator, data_info = build_talker_icl(args, processor)
        counts = apply_freezing(model, stage, tuple(args.trainable) if args.trainable else None)
    else:
        from ..thinker import OmniThinkerForConditionalGeneration
        from .collator import OmniThinkerCollator

        model = train_model = OmniThinkerForConditionalGeneration.from_pretrained(args.model)
        counts = apply_freezing(model, stage, tuple(args.trainable) if args.trainable else None)
        dataset, data_counts, lengths = _thinker_dataset(stage, args, processor)
        data_info = {**data_counts, **lengths}
        collator = OmniThinkerCollator(processor.tokenizer.pad_token_id)
    if counts["trainable"] == 0:
        raise ValueError(f"Stage {stage.name!r} leaves no trainable parameter.")
    train_model.train()
    trainer = OmniStageTrainer(
        model=train_model, args=trainer_arguments(training), train_dataset=dataset, data_collator=collator
    )
    result = trainer.train(resume_from_checkpoint=True if args.resume else None)
    if stage.model != "talker":
        trainer.save_model(str(output))  # gathers FSDP / ZeRO-3 shards; only the main process writes
    metrics = {
        "stage": stage.name,
        "steps": trainer.state.global_step,
        **first_and_last_loss(trainer),
        "train_loss": result.training_loss,
        "trainable_parameters": counts["trainable"],
        "frozen_parameters": counts["frozen"],
        "data": data_info,
        "output_dir": str(output),
    }
    if trainer.is_world_process_zero():
        if stage.model == "talker":
            model.save_pretrained(str(output))  # the whole model (trained talker inside) stays loadable
        processor.save_pretrained(str(output))
        card = stage_card(stage, args, metrics)
        card.save(str(output / "README.md"))
        write_text_atomic(output / "training_metrics.json", json.dumps(metrics, indent=2, default=str))
        if training.push_to_hub:  # the saved folder (weights gathered by save_model under FSDP / ZeRO-3), one commit
            from ..hub import publish_folder

            hub = dict(token=training.hub_token, private=training.hub_private_repo)
            skip = ["checkpoint-*", "training_args.bin"]
            info = publish_folder(
                output, training.hub_model_id, commit_message=f"omni_hf {stage.name}", ignore_patterns=skip, **hub
            )
            metrics["pushed_to"] = info.commit_url
    return metrics


def stage_card(stage: Stage, args, metrics: dict):
    """A model card (huggingface_hub `ModelCard`) stating the stage, data counts and measured losses."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..hub.cards import DEFAULT_LICENSE, PIPELINE_TAGS

    hub_model = args.model if "/" in str(args.model) and not Path(args.model).exists() else None
    data = ModelCardData(
        library_name="transformers",  # the folder loads with transformers (auto_map + code set, trust_remote_code)
        pipeline_tag=PIPELINE_TAGS["thinker"],
        license=DEFAULT_LICENSE,
        tags=["omni_hf", "qwen2.5-omni", stage.name, "multimodal"],
        base_model=getattr(args, "base_model", None) or hub_model,
        datasets=[args.data] if not Path(args.data).exists() else None,
    )
    loss = metrics.get("last_loss")
    template = (
        "---\n{{ card_data }}\n---\n\n# {{ title }}\n\n{{ purpose }}\n\n"
        "Trained with `omni_hf` (`recipes/`, stage `{{ stage }}`) from `{{ base }}` on `{{ data_name }}`.\n\n"
        "| | |\n|---|---|\n| steps | {{ steps }} |\n| first / last logged loss | {{ first }} / {{ last }} |\n"
        "| trainable / frozen parameters | {{ trainable }} / {{ frozen }} |\n| data | {{ data }} |\n\n"
        "Architecture: Qwen2.5-Omni (Thinker–Talker, TMRoPE), arXiv:2503.20215.\n"
    )
    return ModelCard.from_template(
        data,
        template_str=template,
        title=f"omni_hf {stage.name}",
        purpose=stage.purpose,
        stage=stage.name,
        base=args.model,
        data_name=args.data,
        steps=metrics["steps"],
        first=_fmt(metrics.get("first_loss")),
        last=_fmt(loss),
        trainable=f"{metrics['trainable_parameters']:,}",
        frozen=f"{metrics['frozen_parameters']:,}",
        data=", ".join(f"{k}: {v}" for k, v in metrics["data"].items() if v is not None),
    )


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def recipe_main(stage_name: str, allowed: tuple[str, ...], argv=None) -> dict:
    """Run the stage and print its metrics as JSON (main process only)."""
    metrics = run_stage(stage_name, argv, allowed)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
        return metrics
    print(json.dumps(metrics, indent=2, default=str))
    return metrics


def stage_recipe(stage_name: str, allowed: tuple[str, ...]):
    """The `main(argv=None) -> metrics` of a stage recipe script (`recipes/sft.py`, ...); `main.stage` and
    `main.allowed` name what it runs."""

    def main(argv=None) -> dict:
        return recipe_main(stage_name, allowed, argv)

    main.stage, main.allowed = stage_name, allowed
    return main


def run_cli(main) -> None:
    """Run a recipe's `main()` on `sys.argv`; exit status 0 when it returned metrics, 2 with one line for an input
    error (`recipe_config.run_recipe`). Verbosity is transformers' default (warnings: the progress bar, the logged
    losses and the final metrics show), `TRANSFORMERS_VERBOSITY` or `--log_level info` for every loading and saving
    line (`omni_hf.training.recipe_logging`)."""
    from .recipe_config import run_recipe
    from .recipe_logging import apply_log_level

    apply_log_level()
    run_recipe(main)


__all__ = [
    "OmniStageTrainer",
    "StageArguments",
    "packed_attention_masks",
    "parse_args",
    "recipe_main",
    "run_cli",
    "run_stage",
    "stage_card",
    "stage_recipe",
]
