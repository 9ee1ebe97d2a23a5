"""BigVGAN vocoder of Qwen2.5-Omni: log-mel spectrogram (80 bins, 100 frames/s) → 24 kHz waveform.

The network is the anti-aliased BigVGAN generator: a 7-tap input convolution, six transposed-convolution upsampling
stages (5·3·2·2·2·2 = ×240) each followed by the average of AMP residual blocks, a final anti-aliased snake-beta
activation and a 7-tap output convolution. Parameter names follow the official checkpoint (keys under
`token2wav.code2wav_bigvgan_model.`), so the stripped official state dict loads with `strict=True`.

Speed: every anti-aliased activation (×2 upsample → snake-beta → ×2 downsample) runs its two fixed Kaiser-sinc
filters as block-Toeplitz matrix products over the whole signal (one GEMM each, no per-channel convolution and
no Python loop over time); the matrices are built once as non-persistent buffers.
"""

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

OFFICIAL_PREFIX = "token2wav.code2wav_bigvgan_model."

# Mel normalisation of the official vocoder: natural-log mel → dB, floored at −115 dB, offset by −20 dB, then mapped
# linearly from [−115, 0] dB to [−1, 1] and clamped.
_MIN_DB = -115.0
_DB_OFFSET = -20.0
_DB_PER_NEPER = 20.0 / math.log(10.0)

# Input samples per Toeplitz block of the anti-aliasing filters (16 measured fastest on CPU; 8–64 work).
_FILTER_BLOCK = 16


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter (float64, shape `(kernel_size,)`, taps summing to 1).

    Args:
        cutoff: normalised cutoff frequency in (0, 0.5].
        half_width: normalised transition half-width; sets the Kaiser β through the usual attenuation formula.
        kernel_size: number of taps (even kernels are centred between two samples).
    """
    if not 0.0 < cutoff <= 0.5:
        raise ValueError(f"cutoff must lie in (0, 0.5], got {cutoff}")
    attenuation = 2.285 * (kernel_size // 2 - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21.0) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta, dtype=torch.float64)
    time = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return taps / taps.sum()


def _replicate_pad(hidden_states: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Pad the last axis by repeating the edge samples (a single concatenation; faster than `F.pad` replicate)."""
    *lead, _ = hidden_states.shape
    return torch.cat(
        [
            hidden_states[..., :1].expand(*lead, left),
            hidden_states,
            hidden_states[..., -1:].expand(*lead, right),
        ],
        dim=-1,
    )


def _toeplitz_filter(hidden_states: torch.Tensor, matrix: torch.Tensor, pad_left: int, block_in: int) -> torch.Tensor:
    """Apply a block-Toeplitz FIR `matrix` of shape `(window, block_out)` along the last axis of a `(B, C, L)` tensor.

    The signal is replicate-padded by `pad_left` on the left and as much as needed on the right, cut into windows of
    `window` samples every `block_in` samples, and each window is multiplied by `matrix`: output `(B, C, n·block_out)`
    for `n = ceil(L / block_in)` blocks (the caller crops the tail).
    """
    batch, channels, length = hidden_states.shape
    window, block_out = matrix.shape
    num_blocks = -(-length // block_in)
    pad_right = (num_blocks - 1) * block_in + window - length - pad_left
    padded = _replicate_pad(hidden_states, pad_left, pad_right)
    windows = padded.unfold(-1, window, block_in).reshape(-1, window)
    return torch.mm(windows, matrix).view(batch, channels, num_blocks * block_out)


class SnakeBeta(nn.Module):
    """Snake-beta activation `x + sin²(x·eᵅ) / (eᵝ + 1e-9)` with per-channel log-scale `alpha` and `beta`.

    Input and output: `(batch, channels, time)`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = 1e-9

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        frequency = self.alpha.exp()[:, None]
        inverse_magnitude = 1.0 / (self.beta.exp()[:, None] + self.eps)
        periodic = torch.sin(hidden_states * frequency)
        return hidden_states + inverse_magnitude * periodic.square()


class AntiAliasedSnakeBeta(nn.Module):
    """Alias-free snake-beta: ×`ratio` Kaiser-sinc upsampling → `SnakeBeta` → Kaiser-sinc ×`ratio` downsampling.

    Both filters (cutoff `0.5/ratio`, half-width `0.6/ratio`, `kernel_size` taps, replicate padding at the edges) are
    stored as non-persistent block-Toeplitz matrices, so the state dict only holds `act.alpha` and `act.beta`.
    Input and output: `(batch, channels, time)`, same length.
    """

    def __init__(self, channels: int, ratio: int = 2, kernel_size: int = 12, block: int | None = None):
        super().__init__()
        self.act = SnakeBeta(channels)
        self.ratio = ratio
        self.block = block = block or _FILTER_BLOCK
        taps = kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size)
        up_matrix, self.up_pad = self._upsample_matrix(taps, ratio, block)
        down_matrix, self.down_pad = self._downsample_matrix(taps, ratio, block)
        self.register_buffer("up_matrix", up_matrix.float(), persistent=False)
        self.register_buffer("down_matrix", down_matrix.float(), persistent=False)
        # Input samples on either side that reach an output sample: the upsampler's, then the downsampler's (in
        # input-rate samples, rounded up).
        up_reach = max(self.up_pad, up_matrix.shape[0] - block - self.up_pad)
        down_reach = max(self.down_pad, kernel_size - 1 - self.down_pad)
        self.reach = up_reach + -(-down_reach // ratio)

    @staticmethod
    def _upsample_matrix(taps: torch.Tensor, ratio: int, block: int) -> tuple[torch.Tensor, int]:
        """Zero-stuffing upsampler as a `(window, ratio·block)` matrix, plus the left padding of its windows.

        Output sample `n` (upsampled rate) is `ratio · Σ_s x[s] · taps[n + offset − ratio·s]` with
        `offset = (K − ratio) // 2`, i.e. a centred transposed convolution cropped to `ratio · L` samples.
        """
        kernel_size = taps.numel()
        offset = (kernel_size - ratio) // 2
        first = -((kernel_size - 1 - offset) // ratio)  # first input sample (relative to the block) that contributes
        last = block - 1 + (ratio - 1 + offset) // ratio
        inputs = torch.arange(first, last + 1)[:, None]
        outputs = torch.arange(ratio * block)[None, :]
        index = outputs + offset - ratio * inputs
        valid = (index >= 0) & (index < kernel_size)
        matrix = torch.where(valid, ratio * taps[index.clamp(0, kernel_size - 1)], torch.zeros((), dtype=taps.dtype))
        return matrix, -first

    @staticmethod
    def _downsample_matrix(taps: torch.Tensor, ratio: int, block: int) -> tuple[torch.Tensor, int]:
        """Low-pass + decimation as a `(window, block)` matrix, plus the left padding of its windows.

        Output sample `t` is `Σ_k taps[k] · v[ratio·t + k − pad]` with `pad = K//2 − 1` for even `K` (`K//2` if odd).
        """
        kernel_size = taps.numel()
        pad = kernel_size // 2 - int(kernel_size % 2 == 0)
        inputs = torch.arange(ratio * (block - 1) + kernel_size)[:, None]
        outputs = torch.arange(block)[None, :]
        index = inputs - ratio * outputs
        valid = (index >= 0) & (index < kernel_size)
        matrix = torch.where(valid, taps[index.clamp(0, kernel_size - 1)], torch.zeros((), dtype=taps.dtype))
        return matrix, pad

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        needs_grad = hidden_states.requires_grad or self.act.alpha.requires_grad or self.act.beta.requires_grad
        if not (torch.is_grad_enabled() and needs_grad):
            return self._inference(hidden_states)
        # Training: the same filters as a differentiable composition over the whole signal.
        length = hidden_states.shape[-1]
        upsampled = _toeplitz_filter(hidden_states, self.up_matrix, self.up_pad, self.block)
        activated = self.act(upsampled[..., : self.ratio * length])
        downsampled = _toeplitz_filter(activated, self.down_matrix, self.down_pad, self.ratio * self.block)
        return downsampled[..., :length]

    def _inference(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Inference path (no autograd): same filters, snake-beta fused in place."""
        length = hidden_states.shape[-1]
        upsampled = _toeplitz_filter(hidden_states, self.up_matrix, self.up_pad, self.block)
        return self._fused_snake_downsample(upsampled[..., : self.ratio * length], length)

    def _fused_snake_downsample(self, upsampled: torch.Tensor, length: int) -> torch.Tensor:
        """Snake-beta in place (`out=` ops, no autograd) on the upsampled signal, then downsampling."""
        batch, channels, _ = upsampled.shape
        ratio, block = self.ratio, self.block
        # Snake-beta as u + h − h·cos(2·eᵅ·u) with h = 1 / (2·(eᵝ + ε)) (= u + sin²(eᵅ·u) / (eᵝ + ε)), written
        # straight into the replicate-padded buffer that the downsampling windows read. The constant h commutes
        # with the (unit-gain) low-pass filter, so it is added after downsampling, at the lower rate.
        double_frequency = 2.0 * self.act.alpha.exp()[:, None]
        half_magnitude = 0.5 / (self.act.beta.exp()[:, None] + self.act.eps)
        window = self.down_matrix.shape[0]
        num_blocks = -(-length // block)
        padded = upsampled.new_empty(batch, channels, (num_blocks - 1) * ratio * block + window)
        start, end = self.down_pad, self.down_pad + ratio * length
        activated = padded[..., start:end]
        torch.mul(upsampled, double_frequency, out=activated)
        activated.cos_()
        torch.addcmul(upsampled, activated, -half_magnitude, out=activated)
        padded[..., :start] = activated[..., :1]
        padded[..., end:] = activated[..., -1:]

        windows = padded.unfold(-1, window, ratio * block).reshape(-1, window)
        downsampled = torch.mm(windows, self.down_matrix).view(batch, channels, num_blocks * block)[..., :length]
        return downsampled.add_(half_magnitude)


class AMPResidualBlock(nn.Module):
    """Anti-aliased multi-periodicity block: for each dilation `d`,
    `x ← x + conv2(act2(conv1_d(act1(x))))` with "same"-padded convolutions of width `kernel_size`.

    Input and output: `(batch, channels, time)`.
    """

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size - 1) * d // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        )
        # Interleaved as in the official checkpoint: activations 2i and 2i+1 precede convs1[i] and convs2[i].
        self.activations = nn.ModuleList(AntiAliasedSnakeBeta(channels) for _ in range(2 * len(dilations)))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            branch = conv1(self.activations[2 * i](hidden_states))
            branch = conv2(self.activations[2 * i + 1](branch))
            hidden_states = hidden_states + branch
        return hidden_states


class BigVGANVocoder(ModelMixin, ConfigMixin):
    r"""Qwen2.5-Omni's BigVGAN vocoder: natural-log mel spectrogram → waveform at 24 kHz (240 samples per frame).

    Numerically equal to transformers' `Qwen2_5OmniToken2WavBigVGANModel`; its state dict (the official keys with
    the `token2wav.code2wav_bigvgan_model.` prefix removed) loads with `load_state_dict(..., strict=True)`, or use
    [`BigVGANVocoder.from_official`].

    Args:
        mel_dim (`int`, *optional*, defaults to 80):
            Number of mel bins of the input spectrogram.
        upsample_initial_channel (`int`, *optional*, defaults to 1536):
            Channels after the input convolution; every upsampling stage halves them.
        resblock_kernel_sizes (`Sequence[int]`, *optional*, defaults to `(3, 7, 11)`):
            Kernel width of each AMP residual block of a stage (one block per entry; their outputs are averaged).
        resblock_dilation_sizes (`Sequence[Sequence[int]]`, *optional*, defaults to `((1, 3, 5),) * 3`):
            Dilations of each AMP block's residual layers, one tuple per entry of `resblock_kernel_sizes`.
        upsample_rates (`Sequence[int]`, *optional*, defaults to `(5, 3, 2, 2, 2, 2)`):
            Stride of each transposed-convolution upsampling stage; their product is the hop length (240).
        upsample_kernel_sizes (`Sequence[int]`, *optional*, defaults to `(11, 7, 4, 4, 4, 4)`):
            Kernel width of each upsampling stage (padding `(kernel − stride) // 2`, so each stage multiplies the
            length exactly by its stride).

    Example:

    ```python
    >>> import torch
    >>> from omni_hf.token2wav.bigvgan import BigVGANVocoder

    >>> vocoder = BigVGANVocoder(upsample_initial_channel=64, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1,),))
    >>> vocoder(torch.randn(2, 80, 10)).shape
    torch.Size([2, 2400])

    ```
    """

    sampling_rate = 24000
    # Every top-level part: a pipeline load with `torch_dtype=`/`dtype=` keeps token2wav float32 (the official policy).
    _keep_in_fp32_modules = ["activation_post", "conv_post", "conv_pre", "resblocks", "ups"]

    @register_to_config
    def __init__(
        self,
        mel_dim: int = 80,
        upsample_initial_channel: int = 1536,
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        upsample_rates: Sequence[int] = (5, 3, 2, 2, 2, 2),
        upsample_kernel_sizes: Sequence[int] = (11, 7, 4, 4, 4, 4),
    ):
        super().__init__()
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if upsample_initial_channel % 2 ** len(upsample_rates):
            raise ValueError("upsample_initial_channel must be divisible by 2 ** len(upsample_rates)")
        self.num_kernels = len(resblock_kernel_sizes)
        self.hop_length = math.prod(upsample_rates)
        channels = [upsample_initial_channel // 2**i for i in range(len(upsample_rates) + 1)]

        self.conv_pre = nn.Conv1d(mel_dim, channels[0], 7, padding=3)
        # `ups.{i}.0`: a one-element list per stage, as in the official checkpoint.
        self.ups = nn.ModuleList(
            nn.ModuleList([nn.ConvTranspose1d(channels[i], channels[i + 1], k, s, padding=(k - s) // 2)])
            for i, (s, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes))
        )
        # `resblocks.{stage · num_kernels + j}`.
        self.resblocks = nn.ModuleList(
            AMPResidualBlock(channels[i + 1], k, d)
            for i in range(len(upsample_rates))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes)
        )
        self.activation_post = AntiAliasedSnakeBeta(channels[-1])
        self.conv_post = nn.Conv1d(channels[-1], 1, 7, padding=3, bias=False)

    def receptive_field(self) -> int:
        """Mel frames on either side of a frame that can change its 240 samples (an upper bound from the kernel
        sizes). Vocoding a window with this much real context on both sides reproduces the samples of its middle
        exactly, which is how the streaming token2wav vocodes chunk by chunk without seams."""

        def reach(module) -> int:  # samples, at the module's rate, that one output sample reads on either side
            if isinstance(module, AntiAliasedSnakeBeta):
                return module.reach
            if isinstance(module, nn.ConvTranspose1d):
                return -(-module.kernel_size[0] // module.stride[0])
            return (module.kernel_size[0] - 1) * module.dilation[0] // 2

        samples = reach(self.conv_pre) * self.hop_length  # counted in output samples (rate: hop_length per frame)
        rate = 1
        for stage, (upsample,) in enumerate(self.ups):
            samples += reach(upsample) * (self.hop_length // rate)
            rate *= upsample.stride[0]
            blocks = self.resblocks[stage * self.num_kernels : (stage + 1) * self.num_kernels]
            widest = max(sum(reach(m) for m in (*b.convs1, *b.convs2, *b.activations)) for b in blocks)
            samples += widest * (self.hop_length // rate)
        samples += reach(self.activation_post) + reach(self.conv_post)
        return -(-samples // self.hop_length)

    @staticmethod
    def normalize_mel(mel: torch.Tensor) -> torch.Tensor:
        """Natural-log mel → dB (floor −115 dB, offset −20 dB) → [−1, 1]. Shape preserved.

        `20·log10(max(eᵐᵉˡ, floor))` is computed as `max(mel, ln floor) · 20/ln 10`, without the exp/log round trip.
        """
        decibels = mel.clamp_min(_MIN_DB / _DB_PER_NEPER) * _DB_PER_NEPER + _DB_OFFSET
        return ((decibels - _MIN_DB) * (2.0 / -_MIN_DB) - 1.0).clamp(-1.0, 1.0)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode a batch of natural-log mel spectrograms.

        Args:
            mel: `(batch, mel_dim, frames)` (the DiT's output layout; a single `(mel_dim, frames)` is also taken).

        Returns:
            `(batch, frames · 240)` float32 waveform in [−1, 1] (`(frames · 240,)` for an unbatched input).
        """
        unbatched = mel.dim() == 2
        if unbatched:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[1] != self.config.mel_dim:
            raise ValueError(
                f"mel must have shape (batch, {self.config.mel_dim}, frames) (mel bins on dim 1), "
                f"got {tuple(mel.shape)}"
            )
        hidden_states = self.conv_pre(self.normalize_mel(mel.to(self.conv_pre.weight.dtype)))
        for stage, (upsample,) in enumerate(self.ups):
            hidden_states = upsample(hidden_states)
            blocks = self.resblocks[stage * self.num_kernels : (stage + 1) * self.num_kernels]
            total = blocks[0](hidden_states)
            for block in blocks[1:]:
                total = total + block(hidden_states)
            hidden_states = total / self.num_kernels
        waveform = self.conv_post(self.activation_post(hidden_states)).clamp(-1.0, 1.0)
        waveform = waveform.squeeze(1).float()
        return waveform[0] if unbatched else waveform

    @classmethod
    def from_official(cls, state_dict: Mapping[str, torch.Tensor], bigvgan_config: Any = None) -> "BigVGANVocoder":
        """Build from official weights: a full Qwen2.5-Omni state dict (keys under `token2wav.code2wav_bigvgan_model.`,
        other keys ignored) or the vocoder's own state dict, and the official `bigvgan_config` (a dict or a
        transformers config; `None` keeps the defaults of the 7B/3B checkpoints)."""
        if bigvgan_config is not None and not isinstance(bigvgan_config, Mapping):
            bigvgan_config = bigvgan_config.to_dict()
        init_keys = inspect.signature(cls.__init__).parameters.keys() - {"self"}
        kwargs = {k: v for k, v in (bigvgan_config or {}).items() if k in init_keys}
        if any(key.startswith(OFFICIAL_PREFIX) for key in state_dict):
            state_dict = {k[len(OFFICIAL_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(OFFICIAL_PREFIX)}
        model = cls(**kwargs)
        model.load_state_dict(state_dict, strict=True)
        return model
