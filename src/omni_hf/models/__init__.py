"""omni_hf models. Files are flat on purpose: `trust_remote_code` copies a model file and its same-folder
`from .x import` dependencies into a Hub repo, so every modeling/configuration file lives side by side here."""

from .configuration_audio_encoder import OmniAudioEncoderConfig
from .configuration_omni import OmniConfig
from .configuration_talker import OmniTalkerConfig
from .configuration_thinker import OmniTextConfig, OmniThinkerConfig
from .configuration_vision_encoder import OmniVisionEncoderConfig
from .modeling_audio_encoder import OmniAudioEncoder
from .modeling_decoder import OmniTalkerModel, OmniThinkerModel
from .modeling_omni import OmniForConditionalGeneration
from .modeling_talker import OmniTalkerForConditionalGeneration
from .modeling_thinker import OmniThinkerForConditionalGeneration
from .modeling_vision_encoder import OmniVisionEncoder
from .speakers import Speaker, SpeakerBank

__all__ = [
    "OmniAudioEncoder",
    "OmniAudioEncoderConfig",
    "OmniConfig",
    "OmniForConditionalGeneration",
    "OmniTalkerConfig",
    "OmniTalkerForConditionalGeneration",
    "OmniTalkerModel",
    "Speaker",
    "SpeakerBank",
    "OmniTextConfig",
    "OmniThinkerConfig",
    "OmniThinkerForConditionalGeneration",
    "OmniThinkerModel",
    "OmniVisionEncoder",
    "OmniVisionEncoderConfig",
]
