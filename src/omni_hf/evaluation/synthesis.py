"""Speak texts with a model for evaluation: the Talker speaks each text as the Thinker's reply (teacher-forced, as the
Talker DPO recipe scores it), greedy codes, seeded token2wav noise; and the voice's own reference as audio."""

from __future__ import annotations

import numpy as np
import torch

from ..processing.audio import TOKEN2WAV_SAMPLING_RATE as SAMPLING_RATE


@torch.no_grad()
def speak_texts(
    model,
    processor,
    texts: list[str],
    speaker: str = "Chelsie",
    voice_adapter: str | None = None,
    max_new_tokens: int = 600,
    token2wav_steps: int = 10,
    seed: int = 0,
) -> list[np.ndarray]:
    """One float32 `(samples,)` 24 kHz waveform per text (empty when the Talker ended at once)."""
    from ..training.preference_pairs import prepare_prompt, sample_candidates

    if speaker not in model.speakers:
        raise ValueError(
            f"--speaker {speaker}: not a speaker of the model; known: {', '.join(model.speakers.names())}"
        )
    waves = []
    for i, text in enumerate(texts):
        row = prepare_prompt(model, processor, text, i)
        (codes,) = sample_candidates(
            model, row["thinker_prompt_ids"], row["thinker_reply_ids"], 1, speaker, voice_adapter, max_new_tokens,
            media=row["media"], do_sample=False,
        )  # fmt: skip
        if codes.numel() == 0:
            waves.append(np.zeros(0, dtype=np.float32))
            continue
        noise = torch.Generator().manual_seed(seed + i)
        with model.voice_adapters.use(voice_adapter):
            wave = model.codes_to_waveform(
                codes, model.speakers[speaker], generator=noise, num_inference_steps=token2wav_steps
            )
        waves.append(wave.float().cpu().numpy().reshape(-1))
    return waves


@torch.no_grad()
def speaker_reference_audio(model, speaker: str) -> np.ndarray:
    """The speaker's reference mel `(1, frames, 80)` vocoded by the model's BigVGAN: `(samples,)` float32, 24 kHz."""
    if speaker not in model.speakers:
        raise ValueError(
            f"--speaker {speaker}: not a speaker of the model; known: {', '.join(model.speakers.names())}"
        )
    vocoder = model.token2wav.vocoder
    mel = torch.as_tensor(model.speakers[speaker].reference_mel).transpose(1, 2)  # (1, 80, frames)
    weight = next(vocoder.parameters())
    return vocoder(mel.to(weight.device, weight.dtype)).float().cpu().numpy().reshape(-1)


__all__ = ["SAMPLING_RATE", "speak_texts", "speaker_reference_audio"]
