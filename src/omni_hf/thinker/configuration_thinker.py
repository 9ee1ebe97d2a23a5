"""Configuration of the Thinker: audio encoder + vision encoder + Qwen2 decoder with TMRoPE."""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import GenerationConfig, PreTrainedConfig, Qwen2Config

from .configuration_audio_encoder import OmniAudioEncoderConfig
from .configuration_vision_encoder import OmniVisionEncoderConfig

OFFICIAL_MODEL_TYPES = ("qwen2_5_omni", "qwen2_5_omni_thinker")
_OFFICIAL_SUB_MODEL_TYPES = {
    "qwen2_5_omni_audio_encoder": "omni_hf_audio_encoder",
    "qwen2_5_omni_vision_encoder": "omni_hf_vision_encoder",
    "qwen2_5_omni_text": "omni_hf_text",
    "qwen2": "omni_hf_text",
}


@strict
class OmniTextConfig(Qwen2Config):
    r"""
    Configuration of the Thinker's language model: a Qwen2 decoder whose rotary embedding is TMRoPE (three position
    axes, time / height / width, each owning a section of the rotary frequencies). All arguments of
    [`~transformers.Qwen2Config`] apply; defaults are the Qwen2.5-Omni-7B values.

    Args:
        vocab_size (`int`, *optional*, defaults to 152064): Vocabulary size.
        hidden_size (`int`, *optional*, defaults to 3584): Hidden size.
        intermediate_size (`int`, *optional*, defaults to 18944): MLP width.
        num_hidden_layers (`int`, *optional*, defaults to 28): Decoder layers.
        num_attention_heads (`int`, *optional*, defaults to 28): Query heads.
        num_key_value_heads (`int`, *optional*, defaults to 4): Key/value heads (GQA).
        max_position_embeddings (`int`, *optional*, defaults to 32768): Longest supported sequence (the processor
            and model refuse longer prompts).
        rope_parameters (`dict`, *optional*): `{"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}`.
            `mrope_section` splits the `head_dim // 2` rotary frequencies between the time, height and width axes.
        rms_norm_eps (`float`, *optional*, defaults to 1e-6): RMSNorm epsilon.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`): The official checkpoints have an untied lm_head.
    """

    model_type = "omni_hf_text"
    ignore_keys_at_rope_validation = {"mrope_section"}
    default_theta = 1000000.0

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int | None = 4
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        set_mrope_defaults(self, self.hidden_size // self.num_attention_heads)


def set_mrope_defaults(config, head_dim: int) -> None:
    """Default TMRoPE settings (theta 1e6, sections [16, 24, 24]) and a check that the sections cover head_dim / 2."""
    if config.rope_parameters is None:
        config.rope_parameters = {"rope_type": "default", "rope_theta": config.default_theta}
    sections = config.rope_parameters.setdefault("mrope_section", [16, 24, 24])
    if sum(sections) * 2 != head_dim:
        raise ValueError(f"rope_parameters['mrope_section'] {sections} must sum to head_dim / 2 = {head_dim // 2}")


@strict
class OmniThinkerConfig(PreTrainedConfig):
    r"""
    Configuration of [`OmniThinkerForConditionalGeneration`]. Token ids default to the official vocabulary; tests use
    small vocabularies with other ids, so code always reads them from here.

    An official Qwen2.5-Omni `config.json` (`model_type: qwen2_5_omni` with a `thinker_config`, or
    `qwen2_5_omni_thinker`) is accepted by `from_pretrained` and translated to this class.

    Args:
        audio_config (`dict` or [`OmniAudioEncoderConfig`], *optional*): Audio encoder configuration.
        vision_config (`dict` or [`OmniVisionEncoderConfig`], *optional*): Vision encoder configuration.
        text_config (`dict` or [`OmniTextConfig`], *optional*): Language model configuration.
        audio_token_index (`int`, *optional*, defaults to 151646): `<|AUDIO|>` placeholder id.
        image_token_index (`int`, *optional*, defaults to 151655): `<|IMAGE|>` placeholder id.
        video_token_index (`int`, *optional*, defaults to 151656): `<|VIDEO|>` placeholder id.
        audio_start_token_id (`int`, *optional*, defaults to 151647): `<|audio_bos|>` id.
        audio_end_token_id (`int`, *optional*, defaults to 151648): `<|audio_eos|>` id.
        vision_start_token_id (`int`, *optional*, defaults to 151652): `<|vision_bos|>` id.
        vision_end_token_id (`int`, *optional*, defaults to 151653): `<|vision_eos|>` id.
        user_token_id (`int`, *optional*, defaults to 872): id of `user` (used by the talker prompt).
        position_id_per_seconds (`int`, *optional*, defaults to 25): TMRoPE temporal ids per second (1 id = 40 ms).
        seconds_per_chunk (`int`, *optional*, defaults to 2): Length of the audio/video interleaving chunk.
        initializer_range (`float`, *optional*, defaults to 0.02): Standard deviation of the normal initialiser.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`): Whether the lm_head shares the embedding.

    Example:

    ```python
    >>> from omni_hf import OmniThinkerConfig, OmniThinkerForConditionalGeneration
    >>> config = OmniThinkerConfig.from_pretrained("Qwen/Qwen2.5-Omni-7B")  # official config, translated
    >>> model = OmniThinkerForConditionalGeneration.from_pretrained("Qwen/Qwen2.5-Omni-7B")
    ```"""

    model_type = "omni_hf_thinker"
    attribute_map = {
        "image_token_id": "image_token_index",
        "video_token_id": "video_token_index",
        "audio_token_id": "audio_token_index",
    }
    sub_configs_defaults = {
        "text_config": OmniTextConfig,
        "vision_config": OmniVisionEncoderConfig,
        "audio_config": OmniAudioEncoderConfig,
    }

    audio_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    audio_token_index: int = 151646
    image_token_index: int = 151655
    video_token_index: int = 151656
    audio_start_token_id: int = 151647
    audio_end_token_id: int = 151648
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    user_token_id: int = 872
    position_id_per_seconds: int = 25
    seconds_per_chunk: int = 2
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.vision_config.out_hidden_size != self.text_config.hidden_size:
            raise ValueError(
                f"vision_config.out_hidden_size ({self.vision_config.out_hidden_size}) must equal "
                f"text_config.hidden_size ({self.text_config.hidden_size})"
            )
        if self.audio_config.output_dim != self.text_config.hidden_size:
            raise ValueError(
                f"audio_config.output_dim ({self.audio_config.output_dim}) must equal "
                f"text_config.hidden_size ({self.text_config.hidden_size})"
            )

    def get_text_config(self, *args, **kwargs):
        return self.text_config

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict[str, Any], dict[str, Any]]:
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return translate_official_thinker_config(config_dict), kwargs


def translate_official_thinker_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """Map an official Qwen2.5-Omni config dict (full model or thinker) to an [`OmniThinkerConfig`] dict.

    Our own configs pass through unchanged; a config of any other model type raises a `ValueError` naming it.
    """
    model_type = config_dict.get("model_type")
    if model_type == OmniThinkerConfig.model_type:
        return config_dict
    if model_type == "omni_hf" and "thinker_config" in config_dict:
        return dict(config_dict["thinker_config"])
    if model_type not in OFFICIAL_MODEL_TYPES:
        raise ValueError(
            f"Cannot load a Thinker from a config with model_type={model_type!r}: expected 'omni_hf_thinker', "
            "'omni_hf', or an official Qwen2.5-Omni config ('qwen2_5_omni' / 'qwen2_5_omni_thinker')."
        )
    thinker = dict(config_dict["thinker_config"]) if model_type == "qwen2_5_omni" else dict(config_dict)
    for key in ("audio_config", "vision_config", "text_config"):
        sub = dict(thinker.get(key) or {})
        sub["model_type"] = _OFFICIAL_SUB_MODEL_TYPES.get(sub.get("model_type"), sub.get("model_type"))
        if key == "text_config":
            sub["model_type"] = OmniTextConfig.model_type
        thinker[key] = sub
    thinker["model_type"] = OmniThinkerConfig.model_type
    for stale in ("architectures", "auto_map", "transformers_version", "_name_or_path"):
        thinker.pop(stale, None)
    return thinker


def thinker_generation_config(config: OmniThinkerConfig) -> GenerationConfig:
    """The Thinker's own generation defaults, from its config alone: stop at `<|im_end|>`
    (`text_config.eos_token_id`) and pad with `<|endoftext|>` (`text_config.pad_token_id`). A checkpoint's
    `generation_config.json` overrides these when loading."""
    text = config.text_config
    return GenerationConfig(
        bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id, pad_token_id=text.pad_token_id
    )


__all__ = [
    "OmniTextConfig",
    "OmniThinkerConfig",
    "set_mrope_defaults",
    "thinker_generation_config",
    "translate_official_thinker_config",
]
