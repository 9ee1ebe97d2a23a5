"""The base `PreTrainedModel` of omni_hf's transformers models and Whisper's sinusoid table."""

import math

import torch
from transformers import PreTrainedModel


def sinusoid_table(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal positions `(length, channels)`: sines in the first half, cosines in the second."""
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2).float())
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class OmniPreTrainedModel(PreTrainedModel):
    """Shared settings of the omni_hf Thinker models."""

    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = False
    _supports_attention_backend = True
    _no_split_modules = ["WhisperEncoderLayer", "OmniVisionBlock", "Qwen2DecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        # Constant (non-persistent) buffers: rotary frequencies, sinusoid tables. Models are built on the meta
        # device when loading, so these are recomputed here rather than trusted from `__init__`.
        if hasattr(module, "constant_buffers"):
            for name, value in module.constant_buffers().items():
                getattr(module, name).copy_(value)


__all__ = ["OmniPreTrainedModel", "sinusoid_table"]
