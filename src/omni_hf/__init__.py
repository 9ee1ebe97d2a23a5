"""omni_hf: Qwen2.5-Omni in the Hugging Face ecosystem.

`import omni_hf` is fast and quiet: it imports neither torch nor transformers. Each public name loads its module on
first use, and omni_hf registers its classes with transformers' Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoProcessor`, ...) as soon as those are loaded (`omni_hf.lazy_registration`).
"""

import importlib

from . import lazy_registration, log_filters

__version__ = "0.1.0"

# Public name -> the subpackage that defines it.
_EXPORTS = {
    "AudioChunk": "omni",
    "OmniConfig": "omni",
    "OmniForConditionalGeneration": "omni",
    "OmniSession": "omni",
    "StreamStats": "omni",
    "StreamingWindow": "omni",
    "TextDelta": "omni",
    "OmniProcessor": "processing",
    "OmniTalkerConfig": "talker",
    "OmniTalkerForConditionalGeneration": "talker",
    "OmniAudioEncoder": "thinker",
    "OmniAudioEncoderConfig": "thinker",
    "OmniTextConfig": "thinker",
    "OmniThinkerConfig": "thinker",
    "OmniThinkerForConditionalGeneration": "thinker",
    "OmniThinkerModel": "thinker",
    "OmniVisionEncoder": "thinker",
    "OmniVisionEncoderConfig": "thinker",
    "BigVGANVocoder": "token2wav",
    "OmniDiTModel": "token2wav",
    "OmniFlowMatchScheduler": "token2wav",
    "OmniToken2WavPipeline": "token2wav",
    "Speaker": "voices",
    "SpeakerBank": "voices",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'omni_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    lazy_registration.try_register()
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])


def register_auto_classes() -> None:
    """Register omni_hf's classes with transformers' Auto classes now (normally automatic, see the module doc)."""
    from .auto import register_auto_classes as register

    register()


def register_for_official_checkpoints() -> None:
    """Opt in (process-wide): the Auto classes and pipelines load official Qwen2.5-Omni folders (`qwen2_5_omni`,
    `qwen2_5_omni_thinker`) with omni_hf's classes instead of transformers' (see `omni_hf.auto`)."""
    from .auto import register_for_official_checkpoints as register

    register()


log_filters.install()
lazy_registration.install()

__all__ = [*sorted(_EXPORTS), "__version__", "register_auto_classes", "register_for_official_checkpoints"]
