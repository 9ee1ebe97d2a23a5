"""The shared runner behind `recipes/*.py`: options (YAML + flags) → data → freezing → `Trainer` → save, card, push.

`run_stage("sft", ["--config", "recipes/configs/sft_tiny.yaml"])` runs a stage in this process; under
`accelerate launch` the same call runs data-parallel / FSDP / DeepSpeed (TrainingArguments reads the launcher's
environment). Returns a metrics dict (steps, first/last logged loss, parameter counts, data counts, output dir).
"""

import argparse
import json
import math
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.masking_utils import create_causal_mask, packed_sequence_mask_function
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

from ..common.staged_save import write_text_atomic
from .recipe_config import check_output_dir, parse_with_config
from .stages import STAGES, Stage, apply_freezing, get_stage

logger = logging.get_logger(__name__)


def build_parser(stage: Stage) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=stage.purpose)
    p.add_argument("--config", help="YAML file whose keys are these options (command-line flags win)")
    p.add_argument("--stage", default=stage.name, help=f"stage to run (one of {list(STAGES)})")
    # Model / data
    p.add_argument("--model", help="omni_hf (or official Qwen2.5-Omni) checkpoint directory or Hub id")
    p.add_argument("--data", help="a .json/.jsonl/.csv/.parquet file, a save_to_disk folder, or a Hub dataset")
    p.add_argument("--split", default="train")
    p.add_argument("--max_samples", type=int, help="use only the first N rows")
    p.add_argument("--max_length", type=int, help=f"tokens per sample (stage default {stage.max_length})")
    p.add_argument("--too_long", default="drop", choices=["drop", "truncate"], help="rule for over-long rows")
    p.add_argument("--packing", type=_bool, help=f"pack samples into max_length rows (stage default {stage.packing})")
    p.add_argument("--use_audio_in_video", type=_bool, default=True, help="interleave videos with their sound")
    p.add_argument("--trainable", nargs="+", help="parameter-name prefixes to train (overrides the stage)")
    p.add_argument("--speaker", default="Chelsie", help="talker_icl: the voice whose codes the rows hold")
    p.add_argument("--prompt", default="Read this aloud: {text}", help="talker_icl: user prompt for text rows")
    # Training
    p.add_argument("--output_dir", required=False)
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output_dir")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--num_train_epochs", type=float, default=1.0)
    p.add_argument("--learning_rate", type=float, help=f"stage default {stage.learning_rate}")
    p.add_argument("--lr_scheduler_type", default="cosine")
    p.add_argument("--warmup_ratio", type=float, help=f"stage default {stage.warmup_ratio}")
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--batch_size", type=int, default=1, help="per device")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--gradient_checkpointing", type=_bool, default=False)
    p.add_argument("--bf16", type=_bool, default=False)
    p.add_argument("--logging_steps", type=int, default=10)
    p.add_argument("--save_steps", type=int, default=500)
    p.add_argument("--save_total_limit", type=int, default=2)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--repo_id", help="Hub repo for --push_to_hub")
    return p


def _bool(value: str) -> bool:
    if str(value).lower() in ("1", "true", "yes"):
        return True
    if str(value).lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def parse_args(stage_name: str, argv=None, allowed: tuple[str, ...] | None = None) -> tuple[Stage, argparse.Namespace]:
    """Parse flags over the YAML `--config`; the stage may be overridden by `stage:` (checked against `allowed`)."""
    parser = build_parser(get_stage(stage_name))
    args = parse_with_config(parser, argv, required=("model", "data", "output_dir"))
    stage = get_stage(args.stage, allowed)
    return stage, args


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


def _training_args(stage: Stage, args, output: Path, **extra) -> TrainingArguments:
    cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output),
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate if args.learning_rate is not None else stage.learning_rate,
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_steps=args.warmup_ratio if args.warmup_ratio is not None else stage.warmup_ratio,  # < 1: a ratio
        weight_decay=args.weight_decay,
        gradient_checkpointing=args.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if args.gradient_checkpointing else None,
        bf16=args.bf16 and not cpu,
        use_cpu=cpu,
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        dataloader_num_workers=args.dataloader_num_workers,
        seed=args.seed,
        report_to=[],
        remove_unused_columns=False,
        **extra,
    )


def _check_output(args) -> Path:
    output = check_output_dir(args.output_dir, args.overwrite, args.resume)
    if args.resume and (not output.is_dir() or get_last_checkpoint(str(output)) is None):
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
    stage, args = parse_args(stage_name, argv, allowed)
    output = _check_output(args)
    torch.manual_seed(args.seed)
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
        model=train_model, args=_training_args(stage, args, output), train_dataset=dataset, data_collator=collator
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
        if args.push_to_hub:
            metrics["pushed_to"] = push_stage_output(output, args.repo_id, stage)
    return metrics


def stage_card(stage: Stage, args, metrics: dict):
    """A model card (huggingface_hub `ModelCard`) stating the stage, data counts and measured losses."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="transformers",
        tags=["omni_hf", "qwen2.5-omni", stage.name, "multimodal"],
        base_model=args.model if "/" in str(args.model) and not Path(args.model).exists() else None,
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


def push_stage_output(output: Path, repo_id: str, stage: Stage) -> str:
    """Upload the output folder (weights, processor, card) in one commit, without the intermediate checkpoints."""
    from .recipe_config import push_output

    skipped = [p.name for p in output.glob("checkpoint-*")] + ["training_args.bin"]
    return push_output(output, repo_id, f"omni_hf {stage.name}", exclude=skipped)


def recipe_main(stage_name: str, allowed: tuple[str, ...], argv=None) -> dict:
    """Entry point of the recipe scripts: run the stage and print its metrics as JSON (main process only)."""
    metrics = run_stage(stage_name, argv, allowed)
    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
        return metrics
    print(json.dumps(metrics, indent=2, default=str))
    return metrics


__all__ = ["OmniStageTrainer", "packed_attention_masks", "parse_args", "recipe_main", "run_stage", "stage_card"]
