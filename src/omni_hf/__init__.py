"""omni_hf: Qwen2.5-Omni in the Hugging Face ecosystem.

Importing the package registers its classes with transformers' Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoProcessor`).
"""

from .auto import register_auto_classes
from .models import (
    OmniAudioEncoder,
    OmniAudioEncoderConfig,
    OmniTextConfig,
    OmniThinkerConfig,
    OmniThinkerForConditionalGeneration,
    OmniThinkerModel,
    OmniVisionEncoder,
    OmniVisionEncoderConfig,
)
from .processing import OmniProcessor

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "OmniAudioEncoder",
    "OmniAudioEncoderConfig",
    "OmniProcessor",
    "OmniTextConfig",
    "OmniThinkerConfig",
    "OmniThinkerForConditionalGeneration",
    "OmniThinkerModel",
    "OmniVisionEncoder",
    "OmniVisionEncoderConfig",
    "__version__",
]
