"""The 24 kHz log-mel front end of token2wav's world: 80 mel bins, 100 frames per second (240-sample hop).

The DiT generates, and BigVGAN vocodes, natural-log magnitude mels at 100 frames/s (2 per speech code). Qwen did not
publish the front end that made the official reference mels (`spk_dict.pt`) and training targets, so this is the
standard BigVGAN one at that rate: Hann window of 1024, reflect padding so that frame `i` is centred on sample
`240·i + 120`, magnitude STFT, Slaney mel filters from 0 to 12 kHz, `log(max(x, 1e-5))`. Reference clips of new
speakers and the speech tokenizer's inputs both go through it, so they stay consistent with each other.
"""

from dataclasses import dataclass

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank


@dataclass(frozen=True)
class MelSettings:
    sampling_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 240
    num_mels: int = 80
    fmin: float = 0.0
    fmax: float = 12000.0
    floor: float = 1e-5


_FILTERS: dict[MelSettings, torch.Tensor] = {}


def mel_filters(settings: MelSettings = MelSettings()) -> torch.Tensor:
    """`(n_fft // 2 + 1, num_mels)` Slaney mel filter bank (cached per settings)."""
    if settings not in _FILTERS:
        bank = mel_filter_bank(
            num_frequency_bins=settings.n_fft // 2 + 1,
            num_mel_filters=settings.num_mels,
            min_frequency=settings.fmin,
            max_frequency=settings.fmax,
            sampling_rate=settings.sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        _FILTERS[settings] = torch.from_numpy(bank).float()
    return _FILTERS[settings]


def log_mel_spectrogram(waveform: torch.Tensor, settings: MelSettings = MelSettings()) -> torch.Tensor:
    """Waveform `(samples,)` or `(batch, samples)` at `settings.sampling_rate` → `(batch, samples // hop, num_mels)`
    natural-log mel (the layout of `Speaker.reference_mel` and of the DiT's output transposed)."""
    waveform = torch.as_tensor(waveform, dtype=torch.float32)
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2 or waveform.shape[-1] < settings.hop_length:
        raise ValueError(
            f"waveform must be (samples,) or (batch, samples) with at least {settings.hop_length} samples, "
            f"got shape {tuple(waveform.shape)}"
        )
    pad = (settings.n_fft - settings.hop_length) // 2
    padded = torch.nn.functional.pad(waveform.unsqueeze(1), (pad, pad + settings.hop_length), mode="reflect")[:, 0]
    window = torch.hann_window(settings.n_fft, device=waveform.device)
    spectrum = torch.stft(
        padded, settings.n_fft, settings.hop_length, window=window, center=False, return_complex=True
    )
    frames = waveform.shape[-1] // settings.hop_length
    magnitude = spectrum.abs()[..., :frames]  # (batch, freqs, frames)
    mel = torch.einsum("bft,fm->btm", magnitude, mel_filters(settings).to(waveform.device))
    return mel.clamp_min(settings.floor).log()


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a mono float waveform; returns float32 (`omni_hf.processing.audio.resample_audio`)."""
    from ..processing.audio import resample_audio

    return resample_audio(waveform, orig_rate, target_rate)


__all__ = ["MelSettings", "log_mel_spectrogram", "mel_filters", "resample"]
