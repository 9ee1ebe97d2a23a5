"""The Thinker: Whisper-style audio encoder, Qwen2.5-VL vision encoder and the Qwen2 decoder with TMRoPE."""

from .configuration_audio_encoder import OmniAudioEncoderConfig
from .configuration_thinker import OmniTextConfig, OmniThinkerConfig
from .configuration_vision_encoder import OmniVisionEncoderConfig
from .modeling_audio_encoder import OmniAudioEncoder
from .modeling_thinker import OmniThinkerForConditionalGeneration, OmniThinkerModel
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
