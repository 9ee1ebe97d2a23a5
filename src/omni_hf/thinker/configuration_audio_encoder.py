"""Configuration of the Whisper-style audio encoder of the Thinker."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class OmniAudioEncoderConfig(PreTrainedConfig):
    r"""
    Configuration of [`OmniAudioEncoder`]: a Whisper-large-v3 style encoder that attends only inside 2 s chunks
    (`2 * n_window` mel frames) and emits one token per 40 ms. Defaults are the official Qwen2.5-Omni-7B values.

    Args:
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of log-mel channels of the input features.
        encoder_layers (`int`, *optional*, defaults to 32):
            Number of transformer layers.
        encoder_attention_heads (`int`, *optional*, defaults to 20):
            Number of attention heads per layer.
        encoder_ffn_dim (`int`, *optional*, defaults to 5120):
            Width of the feed-forward layers.
        d_model (`int`, *optional*, defaults to 1280):
            Hidden size of the encoder.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout on residual branches (training only).
        attention_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on attention probabilities (training only).
        activation_function (`str`, *optional*, defaults to `"gelu"`):
            Activation of the feed-forward layers.
        activation_dropout (`float`, *optional*, defaults to 0.0):
            Dropout after the feed-forward activation (training only).
        scale_embedding (`bool`, *optional*, defaults to `False`):
            Kept for compatibility with the official config; the encoder never scales its input.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser.
        max_source_positions (`int`, *optional*, defaults to 1500):
            Length of the sinusoidal position table (positions restart in every chunk, so only
            `n_window` of them are used).
        n_window (`int`, *optional*, defaults to 100):
            Half the attention chunk in mel frames: a chunk is `2 * n_window` frames = 2 s at 100 frames/s.
        output_dim (`int`, *optional*, defaults to 3584):
            Width of the projected output, i.e. the Thinker's hidden size.

    Example:

    ```python
    >>> from omni_hf import OmniAudioEncoderConfig, OmniAudioEncoder
    >>> config = OmniAudioEncoderConfig(encoder_layers=2, d_model=64, encoder_attention_heads=4, encoder_ffn_dim=128, output_dim=64)
    >>> encoder = OmniAudioEncoder(config)
    ```"""

    model_type = "omni_hf_audio_encoder"
    attribute_map = {
        "num_hidden_layers": "encoder_layers",
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "intermediate_size": "encoder_ffn_dim",
    }

    num_mel_bins: int = 128
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    d_model: int = 1280
    dropout: float | int = 0.0
    attention_dropout: float | int = 0.0
    activation_function: str = "gelu"
    activation_dropout: float | int = 0.0
    scale_embedding: bool = False
    initializer_range: float = 0.02
    max_source_positions: int = 1500
    n_window: int = 100
    output_dim: int = 3584

    def __post_init__(self, **kwargs):
        if self.d_model % self.encoder_attention_heads != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by encoder_attention_heads ({self.encoder_attention_heads})"
            )
        super().__post_init__(**kwargs)


__all__ = ["OmniAudioEncoderConfig"]
