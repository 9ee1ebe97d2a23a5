"""omni_hf: Qwen2.5-Omni in the Hugging Face ecosystem.

Importing the package registers its classes with transformers' Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoProcessor`).
"""

from .auto import register_auto_classes
from .omni import (
    AudioChunk,
    OmniConfig,
    OmniForConditionalGeneration,
    OmniSession,
    StreamingWindow,
    StreamStats,
    TextDelta,
)
from .processing import OmniProcessor
from .talker import OmniTalkerConfig, OmniTalkerForConditionalGeneration
from .thinker import (
    OmniAudioEncoder,
    OmniAudioEncoderConfig,
    OmniTextConfig,
    OmniThinkerConfig,
    OmniThinkerForConditionalGeneration,
    OmniThinkerModel,
    OmniVisionEncoder,
    OmniVisionEncoderConfig,
)
from .token2wav import BigVGANVocoder, OmniDiTModel, OmniFlowMatchScheduler, OmniToken2WavPipeline
from .voices import Speaker, SpeakerBank

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "AudioChunk",
    "OmniSession",
    "StreamStats",
    "StreamingWindow",
    "TextDelta",
    "BigVGANVocoder",
    "OmniAudioEncoder",
    "OmniAudioEncoderConfig",
    "OmniConfig",
    "OmniDiTModel",
    "OmniFlowMatchScheduler",
    "OmniForConditionalGeneration",
    "OmniTalkerConfig",
    "OmniTalkerForConditionalGeneration",
    "OmniToken2WavPipeline",
    "Speaker",
    "SpeakerBank",
    "OmniProcessor",
    "OmniTextConfig",
    "OmniThinkerConfig",
    "OmniThinkerForConditionalGeneration",
    "OmniThinkerModel",
    "OmniVisionEncoder",
    "OmniVisionEncoderConfig",
    "__version__",
]
