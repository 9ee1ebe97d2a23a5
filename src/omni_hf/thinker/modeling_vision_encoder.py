"""Qwen2.5-VL style vision encoder: 3-D patches → windowed ViT with 2-D rotary → 2x2 merger."""

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionPatchEmbed,
    Qwen2_5_VLMLP,
    Qwen2_5_VLPatchMerger,
)
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index

from ..common.modeling_utils import OmniPreTrainedModel
from ..common.segment_attention import SegmentLayout, segment_attention
from .configuration_vision_encoder import OmniVisionEncoderConfig


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class OmniVisionRotary(nn.Module):
    """2-D rotary angles: the first half of the frequencies follow the row, the second half the column."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", torch.empty(head_dim // 4), persistent=False)

    def constant_buffers(self) -> dict[str, torch.Tensor]:
        spatial = self.head_dim // 2
        return {"inv_freq": 1.0 / (self.theta ** (torch.arange(0, spatial, 2, dtype=torch.float) / spatial))}

    def forward(self, hw_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`hw_ids` `(tokens, 2)` → cos, sin `(tokens, head_dim)` in float32."""
        freqs = (hw_ids[..., None].float() * self.inv_freq).flatten(1)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()


class OmniVisionAttention(nn.Module):
    """Self-attention with separate q/k/v projections (official names `q, k, v, proj`), inside segments."""

    def __init__(self, config: OmniVisionEncoderConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_heads
        self.head_dim = config.hidden_size // config.num_heads
        self.scaling = self.head_dim**-0.5
        self.num_key_value_groups = 1
        self.is_causal = False
        self.q = nn.Linear(config.hidden_size, config.hidden_size, bias=True)
        self.k = nn.Linear(config.hidden_size, config.hidden_size, bias=True)
        self.v = nn.Linear(config.hidden_size, config.hidden_size, bias=True)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, rotary, layout: SegmentLayout, mask, **kwargs) -> torch.Tensor:
        shape = (hidden_states.shape[0], self.num_heads, self.head_dim)
        q, k, v = (proj(hidden_states).view(shape) for proj in (self.q, self.k, self.v))
        cos, sin = (t.unsqueeze(1) for t in rotary)
        q = (q.float() * cos + rotate_half(q.float()) * sin).to(v.dtype)
        k = (k.float() * cos + rotate_half(k.float()) * sin).to(v.dtype)
        dropout = self.config.attention_dropout if self.training and hasattr(self.config, "attention_dropout") else 0.0
        out = segment_attention(self, q, k, v, layout, mask, scaling=self.scaling, dropout=dropout, **kwargs)
        return self.proj(out.reshape(hidden_states.shape[0], -1))


class OmniVisionBlock(GradientCheckpointingLayer):
    def __init__(self, config: OmniVisionEncoderConfig):
        super().__init__()
        self.norm1 = Qwen2RMSNorm(config.hidden_size, eps=1e-6)
        self.norm2 = Qwen2RMSNorm(config.hidden_size, eps=1e-6)
        self.attn = OmniVisionAttention(config)
        self.mlp = Qwen2_5_VLMLP(config, bias=True)

    def forward(self, hidden_states, rotary, layout, mask, **kwargs) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.norm1(hidden_states), rotary, layout, mask, **kwargs)
        return hidden_states + self.mlp(self.norm2(hidden_states))


class OmniVisionEncoder(OmniPreTrainedModel):
    """Vision tower of the Thinker (official names: `patch_embed.proj, blocks.*, merger.{ln_q, mlp.0, mlp.2}`).

    Tokens are reordered once into window order; window layers attend inside 4x4-merged-token windows, the
    `fullatt_block_indexes` layers over their whole frame; every window (or frame) of every image runs in one
    batched attention call.
    """

    config: OmniVisionEncoderConfig
    config_class = OmniVisionEncoderConfig
    main_input_name = "pixel_values"
    base_model_prefix = "visual"
    _no_split_modules = ["OmniVisionBlock"]

    def __init__(self, config: OmniVisionEncoderConfig):
        super().__init__(config)
        self.spatial_merge_size = config.spatial_merge_size
        self.patch_embed = Qwen2_5_VisionPatchEmbed(
            patch_size=config.patch_size,
            temporal_patch_size=config.temporal_patch_size,
            in_channels=config.in_channels,
            embed_dim=config.hidden_size,
        )
        self.rotary = OmniVisionRotary(config.hidden_size // config.num_heads, config.rope_theta)
        self.blocks = nn.ModuleList([OmniVisionBlock(config) for _ in range(config.depth)])
        self.merger = Qwen2_5_VLPatchMerger(
            dim=config.out_hidden_size, context_dim=config.hidden_size, spatial_merge_size=config.spatial_merge_size
        )
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.patch_embed

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """
        Args:
            pixel_values: `(num_patches, channels * temporal_patch * patch * patch)` from the processor.
            grid_thw: `(num_images_or_videos, 3)` patch grid of each item.

        Returns:
            `pooler_output` `(num_patches / merge**2, out_hidden_size)`: merged tokens in prompt order;
            `last_hidden_state` `(num_patches, hidden_size)` before merging, in window order.
        """
        config = self.config
        expected = config.in_channels * config.temporal_patch_size * config.patch_size**2
        if pixel_values.dim() != 2 or pixel_values.shape[1] != expected:
            raise ValueError(
                f"pixel_values must have shape (num_patches, {expected}), got {tuple(pixel_values.shape)}"
            )
        if int(grid_thw.prod(-1).sum()) != pixel_values.shape[0]:
            raise ValueError(
                f"grid_thw {grid_thw.tolist()} describes {int(grid_thw.prod(-1).sum())} patches but pixel_values has "
                f"{pixel_values.shape[0]}"
            )
        unit = self.spatial_merge_size**2
        window_index, cu_windows = get_vision_window_index(
            grid_thw, self.spatial_merge_size, config.window_size, config.patch_size
        )
        window_index = window_index.to(pixel_values.device)
        frames = SegmentLayout(get_vision_cu_seqlens(grid_thw).to(pixel_values.device))
        windows = SegmentLayout(cu_windows.to(pixel_values.device))

        def to_window_order(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, unit, *x.shape[1:])[window_index].reshape(-1, *x.shape[1:])

        hidden = to_window_order(self.patch_embed(pixel_values))
        hw_ids = to_window_order(get_vision_position_ids(grid_thw, self.spatial_merge_size).to(pixel_values.device))
        rotary = self.rotary(hw_ids)
        frame_mask = frames.attention_mask(config, hidden)
        window_mask = windows.attention_mask(config, hidden)
        full = set(config.fullatt_block_indexes)
        for i, block in enumerate(self.blocks):
            layout, mask = (frames, frame_mask) if i in full else (windows, window_mask)
            hidden = block(hidden, rotary, layout, mask, **kwargs)
        merged = self.merger(hidden)[torch.argsort(window_index)]
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=merged)


__all__ = ["OmniVisionEncoder"]
