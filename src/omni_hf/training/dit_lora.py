"""The DiT side of a voice: a LoRA adapter on token2wav's DiT (diffusers' PEFT mixin), trained with the flow-matching
loss on recordings of the voice, so that the mel (timbre, recording conditions) follows the speaker, not only the
Talker's codes. It lives beside the Talker adapter of the same voice name (`model.voices`) and is saved in its `dit/`
subfolder.

Each example pairs a recording's codes with its log-mel: `mel` `(2 * n, 80)` (token2wav's front end, 100 frames/s,
cut or edge-padded to the codes), `codes` `(n,)`.
"""

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..token2wav.mel import MelSettings, log_mel_spectrogram, resample

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


def _batches(examples: list[dict], batch_size: int, generator: torch.Generator):
    """Batches of examples of one length (the loss takes `(batch, n)` codes without padding)."""
    by_length: dict[int, list[dict]] = {}
    for example in examples:
        by_length.setdefault(example["codes"].numel(), []).append(example)
    while True:
        for group in by_length.values():
            order = torch.randperm(len(group), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                chosen = [group[i] for i in order[start : start + batch_size]]
                yield torch.stack([e["mel"] for e in chosen]), torch.stack([e["codes"] for e in chosen])


@torch.no_grad()
def dit_voice_loss(dit, examples: list[dict], speaker, seed: int = 1234) -> float:
    """Mean flow-matching loss over `examples` with fixed noise and times, no condition dropout."""
    dit.eval()
    generator = torch.Generator(device=dit.device).manual_seed(seed)
    total = 0.0
    for example in examples:
        mel, codes = example["mel"][None].to(dit.device), example["codes"][None].to(dit.device)
        total += float(
            dit.flow_matching_loss(
                mel, codes, speaker.ref_mel.to(dit.device), speaker.cond.to(dit.device), 0.0, generator
            )
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
) -> dict:
    """Add LoRA adapter `name` to `model.token2wav.dit` and train it (AdamW, flow-matching loss conditioned on
    `model.speakers[speaker]`); only the adapter's weights change. Returns the loss before and after and the
    trainable parameter count."""
    from peft import LoraConfig

    if not examples:
        raise ValueError("No DiT training examples (rows with audio)")
    dit = model.token2wav.dit
    if name in getattr(dit, "peft_config", {}):
        raise ValueError(f"The DiT has an adapter named {name!r} already")
    voice = model.speakers[speaker]
    dit.add_adapter(LoraConfig(r=r, lora_alpha=alpha, target_modules=DIT_TARGETS), adapter_name=name)
    dit.set_adapters([name], [1.0])
    before = dit_voice_loss(dit, examples, voice)
    trainable = [p for n, p in dit.named_parameters() if f".{name}." in n]
    for param_name, param in dit.named_parameters():
        param.requires_grad_(f".{name}." in param_name)
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=dit.device).manual_seed(seed)
    ref_mel, cond = voice.ref_mel.to(dit.device), voice.cond.to(dit.device)
    dit.train()
    batches = _batches(examples, batch_size, generator)
    for _ in tqdm(range(max_steps), desc=f"DiT voice {name}", leave=False):
        mel, codes = next(batches)
        batch = mel.shape[0]
        loss = dit.flow_matching_loss(
            mel.to(dit.device),
            codes.to(dit.device),
            ref_mel.expand(batch, -1, -1),
            cond.expand(batch, -1),
            drop_condition_prob,
            noise,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    dit.requires_grad_(False)
    after = dit_voice_loss(dit, examples, voice)
    dit.disable_adapters()  # outside `model.voices.use_dit(name)` the DiT is the base one
    logger.info(f"DiT voice adapter {name!r}: flow-matching loss {before:.4f} -> {after:.4f}")
    return {
        "dit_loss_before": before,
        "dit_loss_after": after,
        "dit_trainable_parameters": sum(p.numel() for p in trainable),
    }


__all__ = ["DIT_TARGETS", "dit_voice_example", "dit_voice_loss", "train_dit_voice_adapter"]
