"""Distil token2wav (the paper's 36-evaluation solver) into a 1-, 2- or 4-step student DiT, and save it as a
Diffusers pipeline folder that every part of omni_hf loads.

Method: rectified-flow (ReFlow) distillation: the teacher's `(noise, mel)` pairs are cached, and the student learns
the straight path between them with guidance folded in (one DiT forward per Euler step); see
`omni_hf.training.token2wav_distill` for why.

Data (codes with a speaker): `--codes FILE.jsonl` (`{"codes": [...], "speaker": "Chelsie"}` per line: e.g. the
speech tokenizer's codes of your recordings) or `--prompts FILE.txt` (one text per line: the Talker's own samples).

A real checkpoint on a GPU:

    python recipes/token2wav_distill.py --config recipes/configs/token2wav_distill.yaml --model ./omni-7b \
        --prompts prompts.txt --output_dir token2wav-2step

The tiny CPU run (random demo model; a few minutes):

    python -m omni_hf.testing.demo --out demo_assets
    python recipes/token2wav_distill.py --config recipes/configs/token2wav_distill_tiny.yaml

Then: `model.token2wav = OmniToken2WavPipeline.from_pretrained("token2wav-2step")` (or
`DiffusionPipeline.from_pretrained(...)`, or `omni-hf serve MODEL --token2wav token2wav-2step`): plain calls use
the student's own steps and guidance (saved in its scheduler config). Every `TrainingArguments` field is a flag;
checkpoints go to `OUTPUT/checkpoints` (`--resume` continues from the last one).
"""

import json
import sys
from dataclasses import dataclass, field

from accelerate import PartialState
from transformers import TrainingArguments

from omni_hf.training.recipe_config import OutputArguments, parse_recipe_args

TRAINING_DEFAULTS = {
    "output_dir": "token2wav-student",
    "max_steps": 2000,
    "learning_rate": 1e-4,
    "per_device_train_batch_size": 8,
    "lr_scheduler_type": "constant",
    "logging_steps": 10,
    "save_steps": 500,
    "save_total_limit": 2,
    "seed": 0,
    "remove_unused_columns": False,
}


@dataclass
class DistillArguments(OutputArguments):
    """Model, data and student options (training options are `TrainingArguments`' own)."""

    model: str | None = field(default=None, metadata={"help": "omni_hf model directory (the teacher's token2wav)"})
    codes: str | None = field(default=None, metadata={"help": "JSONL of {'codes': [...], 'speaker': name}"})
    prompts: str | None = field(default=None, metadata={"help": "text file: one prompt per line (Talker samples)"})
    speakers: str = field(default="Chelsie", metadata={"help": "comma-separated speakers for --prompts"})
    segment_codes: int = field(default=96, metadata={"help": "codes per training segment (50 per second)"})
    steps: str = field(default="1,2,4", metadata={"help": "Euler step counts the student is trained for"})
    save_steps_default: int = field(default=2, metadata={"help": "the student's default step count when loaded"})
    held_out: int = field(default=4, metadata={"help": "segments kept out of training, for the proof"})
    lora_rank: int | None = field(default=None, metadata={"help": "train a LoRA of this rank (default: full)"})
    max_new_tokens: int = field(default=128, metadata={"help": "--prompts: Thinker tokens per reply"})
    talker_max_new_tokens: int = field(default=2048, metadata={"help": "--prompts: speech codes per reply"})


def _speaker_encoder():
    """The evaluation harness's offline speaker encoder (Resemblyzer), or None where it is not installed."""
    try:
        from omni_hf.evaluation.speaker import ResemblyzerEncoder

        return ResemblyzerEncoder()
    except ValueError as error:
        print(f"speaker similarity left out: {error}", file=sys.stderr)
        return None


def parse_args(argv=None) -> tuple[DistillArguments, TrainingArguments]:
    return parse_recipe_args(
        (DistillArguments, TrainingArguments), argv, defaults=TRAINING_DEFAULTS, required=("model",)
    )


def main(argv=None) -> dict:
    from omni_hf import OmniForConditionalGeneration
    from omni_hf.training.recipe_config import check_output_dir, trainer_arguments
    from omni_hf.training.token2wav_distill import (
        distill_token2wav,
        mel_error,
        read_code_examples,
        segments,
        speaker_similarity,
        student_pipeline,
        talker_examples,
        teacher_couplings,
    )

    args, training = parse_args(argv)
    if (args.codes is None) == (args.prompts is None):
        raise SystemExit("pass exactly one data source: --codes FILE.jsonl or --prompts FILE.txt")
    steps = tuple(int(n) for n in args.steps.split(",") if n.strip())
    if not steps or min(steps) < 1 or args.save_steps_default not in steps:
        raise SystemExit(f"--steps must list positive counts including --save_steps_default, got {args.steps!r}")
    output = check_output_dir(training.output_dir, args.overwrite, args.resume)
    model = OmniForConditionalGeneration.from_pretrained(args.model).eval()
    if not model.has_talker:
        raise SystemExit(f"{args.model} has no token2wav to distil")
    model.token2wav.set_progress_bar_config(disable=True)
    if args.codes is not None:
        examples = read_code_examples(args.codes, model.speakers)
    else:
        from omni_hf.processing import OmniProcessor

        texts = [line.strip() for line in open(args.prompts, encoding="utf-8") if line.strip()]
        if not texts:
            raise SystemExit(f"{args.prompts} has no prompts")
        speakers = [s.strip() for s in args.speakers.split(",") if s.strip()]
        for name in speakers:
            model.speakers[name]  # an unknown name is refused here, before any sampling
        processor = OmniProcessor.from_pretrained(args.model)
        examples = talker_examples(
            model,
            processor,
            texts,
            speakers,
            seed=training.seed,
            thinker_max_new_tokens=args.max_new_tokens,
            talker_max_new_tokens=args.talker_max_new_tokens,
        )
    pieces = segments(examples, args.segment_codes)
    if len(pieces) <= args.held_out:
        raise SystemExit(
            f"{len(pieces)} segments of {args.segment_codes} codes: need more than --held_out {args.held_out}"
        )
    train, held = pieces[args.held_out :], pieces[: args.held_out]
    result = distill_token2wav(
        model,
        train,
        steps=steps,
        lora_rank=args.lora_rank,
        training_args=trainer_arguments(training, output_dir=str(output / "checkpoints")),
        seed=training.seed,
    )
    teacher = model.token2wav.pipeline
    held_couplings = teacher_couplings(model.token2wav, model, held, seed=training.seed + 1)
    other_noise = teacher_couplings(model.token2wav, model, held, seed=training.seed + 2)
    proof = {
        "teacher_run_to_run": mel_error(teacher, {**other_noise, "target": held_couplings["target"]}),
        "student": {},
        "cut_teacher": {},
    }
    encoder = _speaker_encoder()
    similarity = {"encoder": getattr(encoder, "name", str(encoder)), "student": {}, "cut_teacher": {}}
    if encoder is not None:
        similarity["teacher_run_to_run"] = speaker_similarity(
            teacher, {**other_noise, "target": held_couplings["target"]}, encoder
        )
    for n in steps:
        student = student_pipeline(teacher, result["student"], n)
        student.set_progress_bar_config(disable=True)
        cut = dict(num_inference_steps=n + 1, solver="euler")
        proof["student"][n] = mel_error(student, held_couplings)
        proof["cut_teacher"][n] = mel_error(teacher, held_couplings, **cut)
        if encoder is not None:
            similarity["student"][n] = speaker_similarity(student, held_couplings, encoder)
            similarity["cut_teacher"][n] = speaker_similarity(teacher, held_couplings, encoder, **cut)
    proof["speaker_similarity"] = similarity
    metrics = {
        "method": "rectified-flow distillation (teacher couplings, guidance folded in)",
        "train_segments": len(train),
        "held_out_segments": len(held),
        "loss_before": result["loss_before"],
        "loss_after": result["loss_after"],
        "learning_curve": result["log"],
        "held_out_mel_error": proof,
    }
    state = PartialState()
    if not state.is_main_process:
        state.wait_for_everyone()
        return metrics
    student = student_pipeline(teacher, result["student"], args.save_steps_default)
    student.save_pretrained(output / "student")
    (output / "results.json").write_text(json.dumps(metrics, indent=2) + "\n")
    metrics["student_dir"] = str(output / "student")
    if training.push_to_hub:
        from omni_hf.hub import push_token2wav

        figures = {f"mel_error_{n}_steps": proof["student"][n] for n in steps}
        hub = dict(token=training.hub_token, private=training.hub_private_repo)
        metrics["pushed_to"] = push_token2wav(
            student, training.hub_model_id, results={"student": figures}, **hub
        ).commit_url
    print(json.dumps({k: v for k, v in metrics.items() if k != "learning_curve"}, indent=2))
    state.wait_for_everyone()
    return metrics


if __name__ == "__main__":
    from omni_hf.training.recipe_config import run_recipe

    run_recipe(main)
