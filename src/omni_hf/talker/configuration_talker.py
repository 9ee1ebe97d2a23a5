"""Configuration of the Talker: a dual-track Qwen2 decoder predicting speech codec tokens."""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import Qwen2Config

from ..thinker.configuration_thinker import set_mrope_defaults


@strict
class OmniTalkerConfig(Qwen2Config):
    r"""
    Configuration of [`OmniTalkerForConditionalGeneration`]. The Talker reads the Thinker's track (hidden states +
    token embeddings, width `embedding_size`) plus its own codec-token embeddings, projects them to `hidden_size` and
    predicts the next codec token. All [`~transformers.Qwen2Config`] arguments apply; defaults are the 7B values.
    An official `qwen2_5_omni_talker` config dict is accepted as is.

    Args:
        vocab_size (`int`, *optional*, defaults to 8448): Codec vocabulary (speech codes + control tokens).
        embedding_size (`int`, *optional*, defaults to 3584): Width of the codec embeddings and of the Thinker track
            (the Thinker's hidden size).
        hidden_size (`int`, *optional*, defaults to 896): Decoder width.
        intermediate_size (`int`, *optional*, defaults to 18944): MLP width.
        num_hidden_layers (`int`, *optional*, defaults to 24): Decoder layers.
        num_attention_heads (`int`, *optional*, defaults to 12): Query heads.
        num_key_value_heads (`int`, *optional*, defaults to 4): Key/value heads.
        head_dim (`int`, *optional*, defaults to 128): Per-head width (heads x head_dim need not equal hidden_size).
        rope_parameters (`dict`, *optional*): TMRoPE settings, `mrope_section` sums to `head_dim / 2`.
        num_speech_codes (`int`, *optional*, defaults to 8193): Codes `0 .. num_speech_codes - 1` are speech (the DiT
            embeds them); generation samples only these or an end token.
        tts_codec_start_token_id / tts_codec_end_token_id / tts_codec_pad_token_id / tts_codec_mask_token_id
            (`int`, *optional*, defaults to 8293 / 8294 / 8292 / 8296): codec control tokens (bos, eos, pad, "no codec").
        tts_text_start_token_id / tts_text_end_token_id / tts_text_pad_token_id (`int`, *optional*, defaults to
            151860 / 151861 / 151859): Thinker-vocabulary ids whose embeddings mark the reply's start, end and padding.
        audio_token_index / image_token_index / video_token_index / audio_start_token_id / audio_end_token_id /
            vision_start_token_id / vision_end_token_id (`int`, *optional*): Thinker media ids, for TMRoPE.
        position_id_per_seconds (`int`, *optional*, defaults to 25): TMRoPE ids per second.
        seconds_per_chunk (`int`, *optional*, defaults to 2): Audio/video interleaving chunk.
        spatial_merge_size (`int`, *optional*, defaults to 2): Vision merge size, for TMRoPE.
    """

    model_type = "omni_hf_talker"
    ignore_keys_at_rope_validation = {"mrope_section"}
    default_theta = 1000000.0
    attribute_map = {
        "image_token_id": "image_token_index",
        "video_token_id": "video_token_index",
        "audio_token_id": "audio_token_index",
    }

    vocab_size: int = 8448
    embedding_size: int = 3584
    hidden_size: int = 896
    intermediate_size: int = 18944
    num_hidden_layers: int = 24
    num_attention_heads: int = 12
    num_key_value_heads: int | None = 4
    head_dim: int = 128
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    num_speech_codes: int = 8193
    tts_codec_start_token_id: int = 8293
    tts_codec_end_token_id: int = 8294
    tts_codec_pad_token_id: int = 8292
    tts_codec_mask_token_id: int = 8296
    tts_text_start_token_id: int = 151860
    tts_text_end_token_id: int = 151861
    tts_text_pad_token_id: int = 151859
    audio_token_index: int = 151646
    image_token_index: int = 151655
    video_token_index: int = 151656
    audio_start_token_id: int = 151647
    audio_end_token_id: int = 151648
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    position_id_per_seconds: int = 25
    seconds_per_chunk: int = 2
    spatial_merge_size: int = 2

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        set_mrope_defaults(self, self.head_dim)
        if not 0 < self.num_speech_codes <= self.vocab_size:
            raise ValueError(
                f"num_speech_codes ({self.num_speech_codes}) must be in (0, vocab_size={self.vocab_size}]"
            )

    def validate_token_ids(self):
        """Only codec ids index the Talker's vocabulary; the text/media ids belong to the Thinker's."""
        for name in (
            "tts_codec_start_token_id",
            "tts_codec_end_token_id",
            "tts_codec_pad_token_id",
            "tts_codec_mask_token_id",
        ):
            value = getattr(self, name)
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} ({value}) must be a codec id in [0, vocab_size={self.vocab_size})")

    @property
    def codec_eos_token_ids(self) -> list[int]:
        """Codes that end a spoken reply (the reference stops on pad as well as eos)."""
        return [self.tts_codec_pad_token_id, self.tts_codec_end_token_id]


def translate_official_talker_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """An official `qwen2_5_omni_talker` config dict (or ours) as an [`OmniTalkerConfig`] dict."""
    config = dict(config_dict)
    if config.get("model_type") not in (None, "qwen2_5_omni_talker", OmniTalkerConfig.model_type):
        raise ValueError(f"Expected a talker config, got model_type={config.get('model_type')!r}")
    config["model_type"] = OmniTalkerConfig.model_type
    for stale in ("architectures", "auto_map", "transformers_version", "_name_or_path"):
        config.pop(stale, None)
    return config


__all__ = ["OmniTalkerConfig", "translate_official_talker_config"]
