"""Configuration of the Qwen2.5-VL style vision encoder of the Thinker."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class OmniVisionEncoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`OmniVisionEncoder`]: a ViT over 14-pixel patches of 2 frames, with 2-D rotary positions,
    window attention (full attention in `fullatt_block_indexes`, always within one frame) and a 2x2 patch merger.
    Defaults are the official Qwen2.5-Omni-7B values (read sizes from a checkpoint's `config.json`).

    Args:
        depth (`int`, *optional*, defaults to 32):
            Number of transformer blocks.
        hidden_size (`int`, *optional*, defaults to 1280):
            Hidden size of the blocks.
        hidden_act (`str`, *optional*, defaults to `"silu"`):
            Activation of the gated MLP.
        intermediate_size (`int`, *optional*, defaults to 3420):
            Width of the gated MLP.
        num_heads (`int`, *optional*, defaults to 16):
            Attention heads per block.
        in_channels (`int`, *optional*, defaults to 3):
            Image channels.
        patch_size (`int`, *optional*, defaults to 14):
            Spatial patch size in pixels.
        spatial_merge_size (`int`, *optional*, defaults to 2):
            The merger concatenates `spatial_merge_size x spatial_merge_size` neighbouring patches into one token.
        temporal_patch_size (`int`, *optional*, defaults to 2):
            Frames per patch (images are repeated to fill it).
        window_size (`int`, *optional*, defaults to 112):
            Side of an attention window in pixels (112 = 4x4 merged tokens = 8x8 patches).
        out_hidden_size (`int`, *optional*, defaults to 3584):
            Output width of the merger, i.e. the Thinker's hidden size.
        fullatt_block_indexes (`list[int]`, *optional*, defaults to `[7, 15, 23, 31]`):
            Blocks that attend over a whole frame instead of a window.
        rope_theta (`float`, *optional*, defaults to 10000.0):
            Base of the 2-D rotary frequencies.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser.

    Example:

    ```python
    >>> from omni_hf import OmniVisionEncoderConfig, OmniVisionEncoder
    >>> config = OmniVisionEncoderConfig(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
    >>> encoder = OmniVisionEncoder(config)
    ```"""

    model_type = "omni_hf_vision_encoder"
    attribute_map = {"num_attention_heads": "num_heads", "num_hidden_layers": "depth"}

    depth: int = 32
    hidden_size: int = 1280
    hidden_act: str = "silu"
    intermediate_size: int = 3420
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2
    window_size: int = 112
    out_hidden_size: int = 3584
    fullatt_block_indexes: list[int] | tuple[int, ...] = (7, 15, 23, 31)
    rope_theta: float = 10000.0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # The official config stores rope settings as `rope_parameters`; keep only the theta we use.
        rope_parameters = kwargs.pop("rope_parameters", None)
        if isinstance(rope_parameters, dict) and "rope_theta" in rope_parameters:
            self.rope_theta = float(rope_parameters["rope_theta"])
        self.fullatt_block_indexes = list(self.fullatt_block_indexes)
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if (self.hidden_size // self.num_heads) % 4 != 0:
            raise ValueError("the vision head dim must be divisible by 4 (2-D rotary over h and w)")
        if self.window_size % (self.patch_size * self.spatial_merge_size) != 0:
            raise ValueError(
                f"window_size ({self.window_size}) must be a multiple of patch_size * spatial_merge_size "
                f"({self.patch_size * self.spatial_merge_size})"
            )
        super().__post_init__(**kwargs)


__all__ = ["OmniVisionEncoderConfig"]
