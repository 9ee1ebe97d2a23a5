"""ECAPA-TDNN speaker encoder of the Qwen2.5-Omni token2wav DiT: reference mel `(batch, frames, mel_dim)` → `(batch, enc_dim)`.

Desplanques et al., "ECAPA-TDNN: Emphasized Channel Attention, Propagation and Aggregation in TDNN Based Speaker
Verification" (https://huggingface.co/papers/2005.07143). Layout and parameter names follow the official checkpoint
(`input_embed.spk_encoder.{blocks.*, mfa, asp, fc}`):

    mel ─ blocks[0] (TDNN) ─ blocks[1..n-2] (SE-Res2Net, residual) ─ concat(blocks[1:]) ─ mfa ─ asp ─ fc ─ vector

All convolutions use "same" padding with reflection, so the output never depends on zero padding. Channels-first
`(batch, channels, frames)` inside; the public module takes and returns channels-last / pooled tensors.
"""

from collections.abc import Sequence

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Conv1d:
    return nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding="same", padding_mode="reflect")


class TimeDelayLayer(nn.Module):
    """Dilated 1-D convolution + ReLU: `(batch, in_channels, frames)` → `(batch, out_channels, frames)`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = _conv(in_channels, out_channels, kernel_size, dilation)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(hidden_states))


class Res2NetLayer(nn.Module):
    """Hierarchical residual convolution: channels split in `scale` groups, group i sees group i-1's output.

    `(batch, channels, frames)` → same shape. Group 0 passes through unchanged.
    """

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by the Res2Net scale ({scale})")
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(TimeDelayLayer(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        groups = hidden_states.chunk(self.scale, dim=1)
        outputs = [groups[0]]
        previous = None
        for group, layer in zip(groups[1:], self.blocks):
            previous = layer(group if previous is None else group + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gating from the time-averaged features: `(batch, channels, frames)` → same shape."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.conv1 = _conv(channels, bottleneck)
        self.conv2 = _conv(bottleneck, channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        gate = hidden_states.mean(dim=2, keepdim=True)
        gate = torch.sigmoid(self.conv2(torch.relu(self.conv1(gate))))
        return hidden_states * gate


class SERes2NetBlock(nn.Module):
    """TDNN (1×1) → Res2Net → TDNN (1×1) → squeeze-excitation, plus the input (residual; needs equal widths)."""

    def __init__(self, in_channels, out_channels, res2net_scale, se_channels, kernel_size, dilation):
        super().__init__()
        self.tdnn1 = TimeDelayLayer(in_channels, out_channels)
        self.res2net_block = Res2NetLayer(out_channels, res2net_scale, kernel_size, dilation)
        self.tdnn2 = TimeDelayLayer(out_channels, out_channels)
        self.se_block = SqueezeExcitation(out_channels, se_channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(hidden_states))))
        return out + hidden_states


def _mean_and_std(hidden_states: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12):
    """Weighted mean/std over frames: `(batch, channels, frames)` with weights summing to 1 → two `(batch, channels)`."""
    mean = (weights * hidden_states).sum(dim=2)
    variance = (weights * (hidden_states - mean.unsqueeze(2)).pow(2)).sum(dim=2)
    return mean, variance.clamp(min=eps).sqrt()


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling: `(batch, channels, frames)` → `(batch, 2 * channels)` (weighted mean ‖ std).

    The per-channel frame attention is computed from the features and their global (uniform) mean and std.
    """

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TimeDelayLayer(channels * 3, attention_channels)
        self.conv = _conv(attention_channels, channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        frames = hidden_states.shape[-1]
        uniform = torch.full((1, 1, frames), 1.0 / frames, dtype=hidden_states.dtype, device=hidden_states.device)
        mean, std = _mean_and_std(hidden_states, uniform)
        context = torch.cat(
            [hidden_states, mean.unsqueeze(2).expand(-1, -1, frames), std.unsqueeze(2).expand(-1, -1, frames)], dim=1
        )
        attention = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)
        mean, std = _mean_and_std(hidden_states, attention)
        return torch.cat([mean, std], dim=1)


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN: reference mel `(batch, frames, mel_dim)` → speaker features `(batch, out_dim)`.

    Args:
        mel_dim (`int`): mel bins of the input.
        out_dim (`int`): size of the output vector (`enc_dim` of the DiT config).
        channels (`Sequence[int]`): widths of the first TDNN, the SE-Res2Net blocks and (last) the aggregation layer.
        kernel_sizes (`Sequence[int]`): one kernel size per entry of `channels`.
        dilations (`Sequence[int]`): one dilation per entry of `channels`.
        attention_channels (`int`): bottleneck of the attentive statistics pooling.
        res2net_scale (`int`): number of Res2Net groups.
        se_channels (`int`): bottleneck of the squeeze-excitation gates.
    """

    def __init__(
        self,
        mel_dim: int,
        out_dim: int,
        channels: Sequence[int],
        kernel_sizes: Sequence[int],
        dilations: Sequence[int],
        attention_channels: int,
        res2net_scale: int,
        se_channels: int,
    ):
        super().__init__()
        if not len(channels) == len(kernel_sizes) == len(dilations):
            raise ValueError(
                f"enc_channels, enc_kernel_sizes and enc_dilations need the same length, got {len(channels)}, "
                f"{len(kernel_sizes)} and {len(dilations)}"
            )
        if len(channels) < 3:
            raise ValueError(
                f"enc_channels needs at least 3 entries (TDNN, SE-Res2Net..., aggregation), got {channels}"
            )
        self.blocks = nn.ModuleList([TimeDelayLayer(mel_dim, channels[0], kernel_sizes[0], dilations[0])])
        for i in range(1, len(channels) - 1):
            self.blocks.append(
                SERes2NetBlock(channels[i - 1], channels[i], res2net_scale, se_channels, kernel_sizes[i], dilations[i])
            )
        aggregated = sum(channels[1:-1])
        if aggregated != channels[-1]:
            raise ValueError(
                f"the last enc_channels entry ({channels[-1]}) must equal the sum of the SE-Res2Net widths ({aggregated})"
            )
        self.mfa = TimeDelayLayer(channels[-1], channels[-1], kernel_sizes[-1], dilations[-1])
        self.asp = AttentiveStatsPooling(channels[-1], attention_channels)
        self.fc = _conv(channels[-1] * 2, out_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3:
            raise ValueError(f"reference mel must be (batch, frames, mel_dim), got shape {tuple(mel.shape)}")
        hidden_states = mel.transpose(1, 2)
        features = []
        for block in self.blocks:
            hidden_states = block(hidden_states)
            features.append(hidden_states)
        hidden_states = self.mfa(torch.cat(features[1:], dim=1))  # multi-layer feature aggregation
        pooled = self.asp(hidden_states)
        return self.fc(pooled.unsqueeze(2)).squeeze(2)
