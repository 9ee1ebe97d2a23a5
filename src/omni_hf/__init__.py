"""omni_hf: Qwen2.5-Omni in the Hugging Face ecosystem.

Importing the package registers its classes with transformers' Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoProcessor`).
"""

from .auto import register_auto_classes
from .models import (
    OmniAudioEncoder,
    OmniAudioEncoderConfig,
    OmniConfig,
    OmniForConditionalGeneration,
    OmniTalkerConfig,
    OmniTalkerForConditionalGeneration,
    OmniTextConfig,
    OmniThinkerConfig,
    OmniThinkerForConditionalGeneration,
    OmniThinkerModel,
    OmniVisionEncoder,
    OmniVisionEncoderConfig,
    Speaker,
    SpeakerBank,
)
from .processing import OmniProcessor
from .token2wav import BigVGANVocoder, OmniDiTModel, OmniFlowMatchScheduler, OmniToken2WavPipeline

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
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
