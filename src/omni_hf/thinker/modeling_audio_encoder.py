"""Whisper-style audio encoder with block-wise (2 s chunk) attention: mel `(128, frames)` → 25 tokens per second."""

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

from ..common.modeling_utils import OmniPreTrainedModel, sinusoid_table
from ..common.segment_attention import SegmentLayout
from ..common.tmrope import audio_token_lengths
from .configuration_audio_encoder import OmniAudioEncoderConfig


class OmniAudioEncoder(OmniPreTrainedModel):
    """Audio tower of the Thinker (official parameter names: `conv1, conv2, layers.*, ln_post, proj`).

    Mel features are cut into chunks of `2 * n_window` frames (2 s); each chunk gets its own sinusoidal positions
    and attends only to itself. All chunks of all clips run as one padded batch through every layer.
    """

    config: OmniAudioEncoderConfig
    config_class = OmniAudioEncoderConfig
    main_input_name = "input_features"
    base_model_prefix = "audio_tower"
    _no_split_modules = ["WhisperEncoderLayer"]

    def __init__(self, config: OmniAudioEncoderConfig):
        super().__init__(config)
        dim = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", torch.empty(config.max_source_positions, dim), persistent=False)
        # Stored in official checkpoints, unused by the forward.
        self.audio_bos_eos_token = nn.Embedding(2, config.output_dim)
        self.layers = nn.ModuleList([WhisperEncoderLayer(config) for _ in range(config.encoder_layers)])
        self.ln_post = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, config.output_dim)
        self.gradient_checkpointing = False
        self.post_init()

    def constant_buffers(self) -> dict[str, torch.Tensor]:
        return {"positional_embedding": sinusoid_table(*self.positional_embedding.shape)}

    def get_input_embeddings(self) -> nn.Module:
        return self.conv1

    def set_input_embeddings(self, value: nn.Module):
        self.conv1 = value

    @staticmethod
    def output_lengths(feature_lengths: torch.Tensor) -> torch.Tensor:
        """Tokens per clip for `feature_lengths` mel frames (25 per second)."""
        return audio_token_lengths(feature_lengths)

    def forward(
        self,
        input_features: torch.Tensor,
        feature_lens: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """
        Args:
            input_features: `(num_mel_bins, total_frames)` the clips' valid frames concatenated (official layout), or
                `(batch, num_mel_bins, frames)` padded, with `feature_attention_mask` `(batch, frames)`.
            feature_lens: `(num_clips,)` frames per clip for the concatenated layout.

        Returns:
            `last_hidden_state` `(total_tokens, output_dim)`: the clips' tokens concatenated.
        """
        if input_features.dim() == 3:
            if feature_attention_mask is None:
                feature_attention_mask = torch.ones(
                    input_features.shape[::2], dtype=torch.long, device=input_features.device
                )
            feature_lens = feature_attention_mask.sum(-1)
            input_features = input_features.transpose(1, 2)[feature_attention_mask.bool()].T
        elif feature_lens is None:
            feature_lens = torch.tensor([input_features.shape[-1]], device=input_features.device)
        if input_features.shape[0] != self.config.num_mel_bins:
            raise ValueError(
                f"input_features must have {self.config.num_mel_bins} mel bins, got shape {tuple(input_features.shape)}"
            )
        if int(feature_lens.sum()) != input_features.shape[-1]:
            raise ValueError(
                f"feature_lens sum to {int(feature_lens.sum())} but input_features has {input_features.shape[-1]} frames"
            )
        chunk = 2 * self.config.n_window
        # Chunk boundaries over the concatenated frames: every clip restarts its chunking.
        n_chunks = (feature_lens + chunk - 1) // chunk
        chunk_clip = torch.repeat_interleave(torch.arange(len(feature_lens), device=feature_lens.device), n_chunks)
        first_chunk = torch.cumsum(n_chunks, 0) - n_chunks
        chunk_in_clip = torch.arange(int(n_chunks.sum()), device=feature_lens.device) - first_chunk[chunk_clip]
        chunk_lengths = torch.clamp(feature_lens[chunk_clip] - chunk_in_clip * chunk, max=chunk)
        frames = SegmentLayout(torch.nn.functional.pad(torch.cumsum(chunk_lengths, 0), (1, 0)))

        x = frames.pad(input_features.T.to(self.conv1.weight.dtype)).transpose(1, 2)  # (chunks, mels, chunk)
        x = nn.functional.gelu(self.conv1(x)) * frames.valid.unsqueeze(1)
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)  # (chunks, chunk/2, dim)
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)

        tokens = SegmentLayout(torch.nn.functional.pad(torch.cumsum((chunk_lengths - 1) // 2 + 1, 0), (1, 0)))
        mask = tokens.attention_mask(self.config, x)
        for layer in self.layers:
            x = layer(x, attention_mask=mask, **kwargs)
        hidden = tokens.unpad(x)  # (total after conv, dim): clip after clip

        # Average-pool pairs within each clip (a clip's odd last token is dropped), then project.
        after_conv = (feature_lens - 1) // 2 + 1
        pooled = audio_token_lengths(feature_lens)
        clip_start = torch.cumsum(after_conv, 0) - after_conv
        pair_clip = torch.repeat_interleave(torch.arange(len(feature_lens), device=x.device), pooled)
        pair_in_clip = torch.arange(int(pooled.sum()), device=x.device) - (torch.cumsum(pooled, 0) - pooled)[pair_clip]
        first = clip_start[pair_clip] + 2 * pair_in_clip
        hidden = (hidden[first] + hidden[first + 1]) / 2
        hidden = self.proj(self.ln_post(hidden))
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden)


__all__ = ["OmniAudioEncoder", "OmniPreTrainedModel", "sinusoid_table"]
