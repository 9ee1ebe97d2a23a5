"""Auto-class registration and `auto_map` export, so `AutoModel` & co. resolve omni_hf classes.

`register_auto_classes()` runs once when `omni_hf` is imported. Saved checkpoints also carry an `auto_map` and the
modeling files, so a process without omni_hf loads them with `trust_remote_code=True`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoModelForTextToWaveform,
    AutoProcessor,
)

from .omni import OmniConfig, OmniForConditionalGeneration
from .omni.causal_lm_omni import OmniThinkerForCausalLM
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


# The task Auto classes transformers maps `qwen2_5_omni` / `qwen2_5_omni_thinker` to, plus `AutoModelForCausalLM`:
# on a full folder the text-generating ones give its Thinker (`OmniThinkerForCausalLM`).
TASK_MODELS = {
    AutoModelForCausalLM: {OmniThinkerConfig: OmniThinkerForConditionalGeneration, OmniConfig: OmniThinkerForCausalLM},
    AutoModelForImageTextToText: {
        OmniThinkerConfig: OmniThinkerForConditionalGeneration,
        OmniConfig: OmniThinkerForCausalLM,
    },
    AutoModelForMultimodalLM: {OmniConfig: OmniForConditionalGeneration},
    AutoModelForTextToWaveform: {OmniConfig: OmniForConditionalGeneration},
}


def register_auto_classes() -> None:
    """Register configs with `AutoConfig`, models with `AutoModel` and the task Auto classes of `TASK_MODELS`, the
    processor with `AutoProcessor` (for the full model's and the Thinker's configs)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from .processing import OmniProcessor  # imported before anything is registered: an import error registers nothing

    for config_class, model_class in AUTO_MODELS.items():
        AutoConfig.register(config_class.model_type, config_class)
        AutoModel.register(config_class, model_class)
    for auto_class, models in TASK_MODELS.items():
        for config_class, model_class in models.items():
            auto_class.register(config_class, model_class)

    AutoProcessor.register(OmniThinkerConfig, OmniProcessor)
    AutoProcessor.register(OmniConfig, OmniProcessor)
    _REGISTERED = True
