"""The DiT side of a voice: a LoRA adapter on token2wav's DiT (diffusers' PEFT mixin), trained with the flow-matching
loss on recordings of the voice, so that the mel (timbre, recording conditions) follows the speaker, not only the
Talker's codes. It lives beside the Talker adapter of the same voice name (`model.voice_adapters`) and is saved in its `dit/`
subfolder. Training runs on transformers' `Trainer` (`DiTFlowMatching` wraps the DiT and its loss).

Each example pairs a recording's codes with its log-mel: `mel` `(2 * n, 80)` (token2wav's front end, 100 frames/s,
cut or edge-padded to the codes), `codes` `(n,)`.
"""

import tempfile

import numpy as np
import torch
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.utils import logging

from ..token2wav.mel import MelSettings, log_mel_spectrogram, resample
from .flow_matching import flow_matching_loss

logger = logging.get_logger(__name__)

DIT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
MEL = MelSettings()


def dit_voice_example(audio, sampling_rate: int, codes) -> dict[str, torch.Tensor]:
    """A recording (mono `(samples,)` at `sampling_rate`) and its speech codes `(n,)` → `{"mel", "codes"}`."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all():
        raise ValueError(f"audio must be a finite, non-empty mono waveform, got shape {audio.shape}")
    codes = torch.as_tensor(codes, dtype=torch.long).reshape(-1)
    if codes.numel() == 0:
        raise ValueError("codes is empty")
    mel = log_mel_spectrogram(torch.from_numpy(resample(audio, sampling_rate, MEL.sampling_rate)), MEL)[0]
    frames = 2 * codes.numel()
    if mel.shape[0] < frames:  # a few frames short at the end (rounding): repeat the last frame
        mel = torch.cat([mel, mel[-1:].expand(frames - mel.shape[0], -1)])
    return {"mel": mel[:frames], "codes": codes}


def collate_dit_examples(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack examples cut to the batch's shortest: `mel` `(batch, 2 * n, 80)`, `codes` `(batch, n)` (the loss
    takes codes without padding; each recording keeps its start)."""
    n = min(e["codes"].numel() for e in examples)
    return {
        "mel": torch.stack([e["mel"][: 2 * n] for e in examples]),
        "codes": torch.stack([e["codes"][:n] for e in examples]),
    }


class DiTFlowMatching(nn.Module):
    """The DiT as a `Trainer` model: `forward(mel, codes)` returns `{"loss"}`, the flow-matching loss conditioned on
    one speaker (`reference_mel` `(1, T, 80)`, `speaker_embedding` `(1, 192)`), conditions dropped with
    `drop_condition_prob`."""

    def __init__(
        self, dit, reference_mel: torch.Tensor, speaker_embedding: torch.Tensor, drop_condition_prob: float, seed: int
    ):
        super().__init__()
        self.dit, self.drop_condition_prob = dit, drop_condition_prob
        self.register_buffer("reference_mel", reference_mel.to(dit.device), persistent=False)
        self.register_buffer("speaker_embedding", speaker_embedding.to(dit.device), persistent=False)
        self.generator = torch.Generator(device=dit.device).manual_seed(seed)

    def forward(self, mel: torch.Tensor, codes: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = mel.shape[0]
        reference, cond = self.reference_mel.expand(batch, -1, -1), self.speaker_embedding.expand(batch, -1)
        return {
            "loss": flow_matching_loss(self.dit, mel, codes, reference, cond, self.drop_condition_prob, self.generator)
        }


@torch.no_grad()
def dit_voice_loss(dit, examples: list[dict], speaker, seed: int = 1234) -> float:
    """Mean flow-matching loss over `examples` with fixed noise and times, no condition dropout."""
    dit.eval()
    scorer = DiTFlowMatching(dit, speaker.reference_mel, speaker.speaker_embedding, 0.0, seed)
    total = sum(
        float(scorer(e["mel"][None].to(dit.device), e["codes"][None].to(dit.device))["loss"]) for e in examples
    )
    return total / len(examples)


def train_dit_voice_adapter(
    model,
    examples: list[dict],
    name: str,
    speaker: str,
    r: int = 16,
    alpha: int = 32,
    max_steps: int = 500,
    learning_rate: float = 1e-4,
    batch_size: int = 8,
    drop_condition_prob: float = 0.2,
    seed: int = 0,
    training_args: TrainingArguments | None = None,
) -> dict:
    """Add LoRA adapter `name` to `model.token2wav.dit` and train it with transformers' `Trainer` (flow-matching
    loss conditioned on `model.speakers[speaker]`); only the adapter's weights change. `training_args` replaces
    the defaults built from `max_steps`, `learning_rate`, `batch_size` and `seed` (constant rate, no checkpoints).
    Returns the loss before and after and the trainable parameter count."""
    from peft import LoraConfig

    if not examples:
        raise ValueError("No DiT training examples (rows with audio)")
    dit = model.token2wav.dit
    if name in getattr(dit, "peft_config", {}):
        raise ValueError(f"The DiT has an adapter named {name!r} already")
    conditioning = model.speakers[speaker]
    dit.add_adapter(LoraConfig(r=r, lora_alpha=alpha, target_modules=DIT_TARGETS), adapter_name=name)
    dit.set_adapters([name], [1.0])
    before = dit_voice_loss(dit, examples, conditioning)
    for param_name, param in dit.named_parameters():
        param.requires_grad_(f".{name}." in param_name)
    trainable = sum(p.numel() for p in dit.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory(prefix="dit_voice_") as scratch:
        args = training_args or TrainingArguments(
            output_dir=scratch,
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            lr_scheduler_type="constant",
            weight_decay=0.01,
            seed=seed,
            save_strategy="no",
            logging_steps=0.05,
            report_to="none",
            remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),
        )
        wrapper = DiTFlowMatching(
            dit, conditioning.reference_mel, conditioning.speaker_embedding, drop_condition_prob, seed
        ).train()
        trainer = Trainer(model=wrapper, args=args, train_dataset=examples, data_collator=collate_dit_examples)
        trainer.train()
    dit.requires_grad_(False)
    after = dit_voice_loss(dit, examples, conditioning)
    dit.disable_adapters()  # outside `model.voice_adapters.use_dit(name)` the DiT is the base one
    logger.info(f"DiT voice adapter {name!r}: flow-matching loss {before:.4f} -> {after:.4f}")
    return {
        "dit_loss_before": before,
        "dit_loss_after": after,
        "dit_trainable_parameters": trainable,
        "dit_steps": trainer.state.global_step,
    }


__all__ = [
    "DIT_TARGETS",
    "DiTFlowMatching",
    "collate_dit_examples",
    "dit_voice_example",
    "dit_voice_loss",
    "train_dit_voice_adapter",
]
