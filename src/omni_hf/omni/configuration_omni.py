"""Configuration of the full model: Thinker + Talker + Token2Wav."""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..talker.configuration_talker import OmniTalkerConfig, translate_official_talker_config
from ..thinker.configuration_thinker import OmniThinkerConfig, translate_official_thinker_config


@strict
class OmniConfig(PreTrainedConfig):
    r"""
    Configuration of [`OmniForConditionalGeneration`]. An official Qwen2.5-Omni `config.json`
    (`model_type: qwen2_5_omni`) is accepted by `from_pretrained` and translated.

    Args:
        thinker_config (`dict` or [`OmniThinkerConfig`], *optional*): the Thinker.
        talker_config (`dict` or [`OmniTalkerConfig`], *optional*): the Talker.
        token2wav_config (`dict`, *optional*): `{"dit_config": {...}, "bigvgan_config": {...}}` in the official
            field names; used to build the token2wav pipeline when loading an official checkpoint (our own layout
            stores the pipeline's configs in its `token2wav/` folder).
        enable_audio_output (`bool`, *optional*, defaults to `True`): build the Talker and token2wav.
    """

    model_type = "omni_hf"
    sampling_rate = 24000  # of the speech out (token2wav), read by transformers' text-to-audio pipeline
    sub_configs_defaults = {"thinker_config": OmniThinkerConfig, "talker_config": OmniTalkerConfig}

    thinker_config: dict | PreTrainedConfig | None = None
    talker_config: dict | PreTrainedConfig | None = None
    token2wav_config: dict | None = None
    enable_audio_output: bool = True

    def get_text_config(self, *args, **kwargs):
        return self.thinker_config.text_config

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict[str, Any], dict[str, Any]]:
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return translate_official_config(config_dict), kwargs


def translate_official_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """An official `qwen2_5_omni` config dict (or ours) as an [`OmniConfig`] dict; other model types raise."""
    model_type = config_dict.get("model_type")
    if model_type == OmniConfig.model_type:
        return config_dict
    if model_type != "qwen2_5_omni":
        raise ValueError(
            f"Cannot load the full omni model from a config with model_type={model_type!r}: expected 'omni_hf' or an "
            "official Qwen2.5-Omni config ('qwen2_5_omni')."
        )
    token2wav = dict(config_dict.get("token2wav_config") or {})
    return {
        "model_type": OmniConfig.model_type,
        "thinker_config": translate_official_thinker_config(config_dict),
        "talker_config": translate_official_talker_config(config_dict.get("talker_config") or {}),
        "token2wav_config": {k: token2wav[k] for k in ("dit_config", "bigvgan_config") if k in token2wav},
        "enable_audio_output": config_dict.get("enable_audio_output", True),
    }


__all__ = ["OmniConfig", "translate_official_config"]
