"""Auto-class registration and `auto_map` export, so `AutoModel` & co. resolve omni_hf classes.

`register_auto_classes()` runs once when `omni_hf` is imported. Saved checkpoints also carry an `auto_map` and the
modeling files, so a process without omni_hf loads them with `trust_remote_code=True`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor

from .omni import OmniConfig, OmniForConditionalGeneration
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

_REGISTERED = False

# Which classes `AutoModel` builds for each config (the thinker: the full multimodal model, as users expect).
AUTO_MODELS = {
    OmniConfig: OmniForConditionalGeneration,
    OmniTalkerConfig: OmniTalkerForConditionalGeneration,
    OmniThinkerConfig: OmniThinkerForConditionalGeneration,
    OmniTextConfig: OmniThinkerModel,
    OmniAudioEncoderConfig: OmniAudioEncoder,
    OmniVisionEncoderConfig: OmniVisionEncoder,
}


def register_auto_classes() -> None:
    """Register configs with `AutoConfig`, models with `AutoModel`/`AutoModelForCausalLM`, the processor with `AutoProcessor`."""
    global _REGISTERED
    if _REGISTERED:
        return
    for config_class, model_class in AUTO_MODELS.items():
        AutoConfig.register(config_class.model_type, config_class)
        AutoModel.register(config_class, model_class)
    AutoModelForCausalLM.register(OmniThinkerConfig, OmniThinkerForConditionalGeneration)

    from .processing import OmniProcessor

    AutoProcessor.register(OmniThinkerConfig, OmniProcessor)
    _REGISTERED = True
