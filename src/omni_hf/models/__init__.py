"""omni_hf models. Files are flat on purpose: `trust_remote_code` copies a model file and its same-folder
`from .x import` dependencies into a Hub repo, so every modeling/configuration file lives side by side here."""

from .configuration_audio_encoder import OmniAudioEncoderConfig
from .configuration_thinker import OmniTextConfig, OmniThinkerConfig
from .configuration_vision_encoder import OmniVisionEncoderConfig
from .modeling_audio_encoder import OmniAudioEncoder
from .modeling_decoder import OmniThinkerModel
from .modeling_thinker import OmniThinkerForConditionalGeneration
from .modeling_vision_encoder import OmniVisionEncoder

__all__ = [
    "OmniAudioEncoder",
    "OmniAudioEncoderConfig",
    "OmniTextConfig",
    "OmniThinkerConfig",
    "OmniThinkerForConditionalGeneration",
    "OmniThinkerModel",
    "OmniVisionEncoder",
    "OmniVisionEncoderConfig",
]
