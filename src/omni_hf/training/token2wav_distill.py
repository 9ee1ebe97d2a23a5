"""Few-step token2wav students: rectified-flow distillation of the paper's 36-evaluation solver.

Method (ReFlow distillation, Liu et al. 2022, as InstaFlow uses it): the teacher (the paper's solver: 10-point sway
grid, RK4, classifier-free guidance 0.5) maps noise `x0` to a mel `x1*` for each training example; these couplings are
cached. The student (a copy of the teacher's DiT, fully trained or with LoRA) learns the velocity of the *straight*
path between each coupled pair, `x_t = (1 - t) x0 + t x1*`, target `x1* - x0`, conditional only (guidance folded in:
one forward per step). On straight paths an Euler step is exact, so the student decodes in 1, 2 or 4 Euler steps on
a uniform grid; training samples `t` from those grids' points (`0` for one step, `0, 1/2` for two, ...), the only
times the student is ever evaluated at. Why this method: its targets need only the teacher's final outputs (cheap
to cache, exactly the official solve), no second network (DMD) or self-consistency bootstrapping (consistency /
shortcut models), and one student serves every step count.

Data: code sequences with a speaker (`DistillExample`), from the Talker's own samples (`talker_examples`), from a
JSONL file of codes (`read_code_examples`), or from recordings through the speech tokenizer. Long sequences are cut
into `segment_codes` pieces (the DiT's attention is block-local, so a student trained on segments decodes windows).
"""

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..token2wav.pipeline_token2wav import OmniToken2WavPipeline
from ..token2wav.scheduling_flow_match import OmniFlowMatchScheduler

logger = logging.getLogger(__name__)
# `distill_token2wav`'s `TrainingArguments` when none are given (the recipe passes its own)
DEFAULT_TRAINING = dict(
    max_steps=200, per_device_train_batch_size=4, learning_rate=1e-4, lr_scheduler_type="constant",
    save_strategy="no", logging_steps=10, report_to="none", remove_unused_columns=False,
)  # fmt: skip


@dataclass
class DistillExample:
    """One training utterance: speech `codes` `(n,)` and the `speaker` (a name in the model's speakers)."""

    codes: torch.Tensor
    speaker: str


def read_code_examples(path: str | os.PathLike, speakers) -> list[DistillExample]:
    """Examples from a JSONL file of `{"codes": [int, ...], "speaker": name}` lines (checked before any work)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"codes file {str(path)!r} does not exist (expected JSONL lines with 'codes' and 'speaker')")
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            codes, speaker = row["codes"], row["speaker"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path}:{number}: expected {{'codes': [...], 'speaker': name}}, got {line[:80]!r}"
            ) from (error)
        if not isinstance(codes, list) or not codes or not all(isinstance(c, int) and c >= 0 for c in codes):
            raise ValueError(f"{path}:{number}: 'codes' must be a non-empty list of non-negative integers")
        if speaker not in speakers:
            raise ValueError(f"{path}:{number}: unknown speaker {speaker!r}; known: {', '.join(sorted(speakers))}")
        examples.append(DistillExample(torch.tensor(codes, dtype=torch.long), speaker))
    if not examples:
        raise ValueError(f"codes file {str(path)!r} has no examples")
    return examples


@torch.no_grad()
def talker_examples(model, processor, texts: list[str], speakers: list[str], seed: int = 0, **generation):
    """Examples from the Talker's own samples: each text is answered (`model.generate_speech_codes`), speakers
    taken in turn. `generation`: `generate` keyword arguments (e.g. `thinker_max_new_tokens`)."""
    examples = []
    torch.manual_seed(seed)
    for i, text in enumerate(tqdm(texts, desc="Talker samples", disable=not texts)):
        conversation = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        inputs = processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        speaker = speakers[i % len(speakers)]
        _, codes = model.generate_speech_codes(
            inputs["input_ids"], inputs.get("attention_mask"), speaker=speaker, **generation
        )
        if codes[0].numel():
            examples.append(DistillExample(codes[0].cpu(), speaker))
    return examples


def segments(examples: list[DistillExample], segment_codes: int) -> list[DistillExample]:
    """Cut every example into pieces of exactly `segment_codes` codes (a shorter remainder is dropped; an example
    shorter than one piece is kept whole only if it is the only data)."""
    pieces = [
        DistillExample(example.codes[start : start + segment_codes], example.speaker)
        for example in examples
        for start in range(0, example.codes.numel() - segment_codes + 1, segment_codes)
    ]
    if not pieces:
        raise ValueError(f"no example has {segment_codes} codes: lower segment_codes or add longer examples")
    return pieces


@torch.no_grad()
def teacher_couplings(teacher, model, examples: list[DistillExample], seed: int = 0) -> dict:
    """The teacher's `(noise x0, mel x1*)` `(examples, frames, mel_dim)` for each example (the paper's solver, the
    pipeline's default settings), with the codes and speaker conditioning stacked for training."""
    generator = torch.Generator(device=teacher.device).manual_seed(seed)
    noise, target, reference, embedding = [], [], [], []
    for example in tqdm(examples, desc="Teacher solves"):
        conditioning = teacher.speaker_conditioning(model.speakers[example.speaker])
        frames = example.codes.numel() * teacher.dit.config.repeats
        x0 = torch.randn(1, frames, teacher.dit.config.mel_dim, generator=generator, device=teacher.device)
        out = teacher(
            example.codes[None],
            conditioning.reference_mel,
            conditioning.speaker_embedding,
            latents=x0,
            output_type="latent",
        )
        noise.append(x0.cpu())
        target.append(out.audios.cpu())
        reference.append(conditioning.reference_mel.float().cpu())
        embedding.append(conditioning.speaker_embedding.float().reshape(1, -1).cpu())
    return {
        "codes": torch.stack([e.codes for e in examples]),
        "noise": torch.cat(noise),
        "target": torch.cat(target),
        "reference_mel": _pad_stack(reference),
        "speaker_embedding": torch.cat(embedding),
    }


def _pad_stack(mels: list[torch.Tensor]) -> torch.Tensor:
    """`(1, frames_i, mel_dim)` reference mels → `(n, max frames, mel_dim)`, repeating each one's last frames."""
    longest = max(m.shape[1] for m in mels)
    return torch.cat(
        [F.pad(m.transpose(1, 2), (0, longest - m.shape[1]), mode="replicate").transpose(1, 2) for m in mels]
    )


def student_times(steps: tuple[int, ...]) -> torch.Tensor:
    """The times a student decoding in any of `steps` Euler steps is evaluated at: `k / n` for `k < n`."""
    return torch.tensor(sorted({k / n for n in steps for k in range(n)}))


class ReflowDistillation(nn.Module):
    """The student's loss for `Trainer`: velocity at `x_t` on the straight path `x0 → x1*` against `x1* - x0`.

    `forward(codes, noise, target, reference_mel, speaker_embedding)` (batched as `teacher_couplings` stacks them)
    returns `{"loss": ...}`; `t` is drawn from `times` (the student's evaluation times)."""

    def __init__(self, student, times: torch.Tensor, seed: int = 0):
        super().__init__()
        self.student = student
        self.register_buffer("times", times.float(), persistent=False)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, codes, noise, target, reference_mel, speaker_embedding):
        index = torch.randint(len(self.times), (codes.shape[0],), generator=self.generator)
        t = self.times[index].to(noise.device, noise.dtype)
        x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * target
        conditioning = self.student.prepare_conditioning(codes, reference_mel, speaker_embedding, guidance=False)
        velocity = self.student(x_t, t, conditioning).sample
        return {"loss": F.mse_loss(velocity.float(), (target - noise).float())}


@torch.no_grad()
def reflow_loss(student, couplings: dict, times: torch.Tensor) -> float:
    """The mean distillation loss over every coupling and every evaluation time (a learning-curve point)."""
    losses = []
    for t in times.tolist():
        for start in range(0, couplings["codes"].shape[0], 8):
            batch = {k: v[start : start + 8].to(student.device) for k, v in couplings.items()}
            tt = torch.full((batch["codes"].shape[0],), t, device=student.device)
            x_t = (1 - t) * batch["noise"] + t * batch["target"]
            cond = student.prepare_conditioning(
                batch["codes"], batch["reference_mel"], batch["speaker_embedding"], guidance=False
            )
            velocity = student(x_t, tt, cond).sample
            losses.append(F.mse_loss(velocity.float(), (batch["target"] - batch["noise"]).float()).item())
    return sum(losses) / len(losses)


def student_pipeline(teacher: OmniToken2WavPipeline, student_dit, steps: int) -> OmniToken2WavPipeline:
    """A token2wav pipeline around the student DiT: Euler on a uniform grid of `steps` steps, no guidance (folded
    in), the teacher's vocoder; its scheduler config carries these settings, so plain calls use them."""
    scheduler = OmniFlowMatchScheduler(
        solver="euler", sway_coefficient=None, num_inference_steps=steps + 1, guidance_scale=0.0
    )
    pipe = OmniToken2WavPipeline(dit=student_dit.eval(), scheduler=scheduler, vocoder=teacher.vocoder)
    pipe.set_default_speaker(teacher.default_speaker)
    return pipe


def distill_token2wav(
    model,
    examples: list[DistillExample],
    output_dir: str | os.PathLike | None = None,
    steps: tuple[int, ...] = (1, 2, 4),
    lora_rank: int | None = None,
    training_args=None,
    seed: int = 0,
) -> dict:
    """Distil `model.token2wav` (the teacher) into a few-step student with transformers' `Trainer`.

    Args:
        model: an `OmniForConditionalGeneration` whose token2wav is the DiT pipeline (the teacher, left unchanged).
        examples: `DistillExample`s of equal length (`segments`).
        output_dir: where `Trainer` writes checkpoints (resumable with `resume_from_checkpoint`); a temporary folder
            when None.
        steps: the Euler step counts the student is trained for (its evaluation times are their grid points).
        lora_rank: train a LoRA of this rank on the student (None: every DiT weight).
        training_args: `transformers.TrainingArguments` (default: `DEFAULT_TRAINING`: 200 steps, AdamW 1e-4,
            batch 4).
        seed: noise of the couplings and the sampling of `t`.

    Returns:
        `{"student": OmniDiTModel, "couplings": dict, "loss_before": float, "loss_after": float, "log": [...]}`.
    """
    import copy

    from transformers import Trainer, TrainingArguments

    teacher = model.token2wav
    if not hasattr(teacher, "dit"):
        raise ValueError("distill_token2wav needs the DiT pipeline as model.token2wav (the teacher)")
    lengths = {e.codes.numel() for e in examples}
    if len(lengths) != 1:
        raise ValueError(f"examples must have one length (cut them with segments()), got lengths {sorted(lengths)}")
    if not steps or any(int(n) < 1 for n in steps):
        raise ValueError(f"steps must be positive step counts, got {steps}")
    couplings = teacher_couplings(teacher, model, examples, seed)
    times = student_times(tuple(steps))
    student = copy.deepcopy(teacher.dit).train()
    if lora_rank is not None:
        from peft import LoraConfig

        from .dit_lora import DIT_TARGETS

        student.add_adapter(LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules=DIT_TARGETS))
    before = reflow_loss(student, couplings, times)
    rows = [dict(zip(couplings, values)) for values in zip(*couplings.values())]
    with tempfile.TemporaryDirectory(prefix="token2wav_distill_") as scratch:
        args = training_args or TrainingArguments(
            output_dir=str(output_dir or scratch), seed=seed, use_cpu=not torch.cuda.is_available(), **DEFAULT_TRAINING
        )
        trainer = Trainer(
            model=ReflowDistillation(student, times, seed),
            args=args,
            train_dataset=rows,
            data_collator=lambda batch: {k: torch.stack([row[k] for row in batch]) for k in batch[0]},
        )
        trainer.train(resume_from_checkpoint=_last_checkpoint(args.output_dir) if output_dir else None)
    if lora_rank is not None:  # one plain DiT again: the LoRA folded into its weights
        student.fuse_lora()
        student.unload_lora()
    student.eval().requires_grad_(False)
    after = reflow_loss(student, couplings, times)
    logger.info(f"token2wav student: distillation loss {before:.4f} -> {after:.4f}")
    log = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {"student": student, "couplings": couplings, "loss_before": before, "loss_after": after, "log": log}


def _last_checkpoint(output_dir) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


@torch.no_grad()
def mel_error(pipe: OmniToken2WavPipeline, couplings: dict, **call) -> float:
    """Mean absolute error of `pipe`'s mel against the teacher's (same codes, speakers and noise), relative to the
    teacher mel's mean absolute deviation from its mean (0: identical; 1: no better than a flat mel)."""
    errors, scales = [], []
    for i in range(couplings["codes"].shape[0]):
        out = pipe(
            couplings["codes"][i : i + 1],
            couplings["reference_mel"][i : i + 1],
            couplings["speaker_embedding"][i : i + 1],
            latents=couplings["noise"][i : i + 1].to(pipe.device),
            output_type="latent",
            **call,
        ).audios.cpu()
        target = couplings["target"][i : i + 1]
        errors.append((out - target).abs().mean().item())
        scales.append((target - target.mean()).abs().mean().item())
    return sum(errors) / max(sum(scales), 1e-12)


@torch.no_grad()
def speaker_similarity(pipe: OmniToken2WavPipeline, couplings: dict, encoder, **call) -> float:
    """Mean cosine similarity of speaker embeddings (`encoder(waveform, 24000) -> vector`, e.g. the evaluation
    harness's `ResemblyzerEncoder`) between `pipe`'s waveforms and the teacher's (its mel through the same vocoder),
    on the same codes, speakers and noise."""
    from ..evaluation.speaker import cosine

    total = 0.0
    count = couplings["codes"].shape[0]
    for i in range(count):
        wave = pipe(
            couplings["codes"][i : i + 1],
            couplings["reference_mel"][i : i + 1],
            couplings["speaker_embedding"][i : i + 1],
            latents=couplings["noise"][i : i + 1].to(pipe.device),
            **call,
        ).audios.reshape(-1)
        mel = couplings["target"][i : i + 1].transpose(1, 2).to(pipe.device, pipe.vocoder.dtype)
        teacher = pipe.vocoder(mel).reshape(-1)
        total += cosine(encoder(wave.float().cpu().numpy(), 24000), encoder(teacher.float().cpu().numpy(), 24000))
    return total / count


__all__ = [
    "DistillExample",
    "ReflowDistillation",
    "distill_token2wav",
    "mel_error",
    "read_code_examples",
    "reflow_loss",
    "segments",
    "speaker_similarity",
    "student_pipeline",
    "student_times",
    "talker_examples",
    "teacher_couplings",
]
