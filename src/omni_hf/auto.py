"""Auto-class registration, so `AutoModel` & co. resolve omni_hf classes.

`register_auto_classes()` runs once when `omni_hf` is imported: it maps omni_hf's own model types (`omni_hf`,
`omni_hf_thinker`, ...: folders written by omni_hf or `omni-hf convert`). Saved checkpoints also carry an `auto_map`
and the modeling files, so a process without omni_hf loads them with `trust_remote_code=True`.

Official folders (`model_type: qwen2_5_omni` / `qwen2_5_omni_thinker`, e.g. `Qwen/Qwen2.5-Omni-7B`) keep
transformers' own classes, because those model types are transformers'. Two ways to omni_hf's classes:
- `omni-hf convert SRC DST` once (then every Auto class and pipeline resolves ours), or the concrete classes
  (`OmniForConditionalGeneration.from_pretrained(official)`), which read official folders as they are;
- `omni_hf.register_for_official_checkpoints()`: an explicit, process-wide opt-in after which the Auto classes in
  `OFFICIAL_TASK_MODELS` build omni_hf's classes from official folders too (transformers' own Qwen2.5-Omni classes
  are then reached by name only, e.g. `Qwen2_5OmniForConditionalGeneration.from_pretrained`).
Without the opt-in, the Auto classes transformers has no class for (`AutoModel` and `AutoModelForCausalLM` on a
full official folder, ...) raise an error naming both ways instead of "Unrecognized configuration class".
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
_OFFICIAL_REGISTERED = False

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
    if not _OFFICIAL_REGISTERED:
        register_official_hints()


# ------------------------------------------------------------------------------------------- official folders
def _official_config_classes():
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniThinkerConfig

    return Qwen2_5OmniConfig, Qwen2_5OmniThinkerConfig


def _official_task_models() -> dict:
    """`{auto class: {official config class name: (our class, translate config dict)}}` of the opt-in."""
    from .omni.configuration_omni import translate_official_config
    from .thinker.configuration_thinker import translate_official_thinker_config

    full = (OmniForConditionalGeneration, translate_official_config)
    thinker_of_full = (OmniThinkerForCausalLM, translate_official_config)
    thinker = (OmniThinkerForConditionalGeneration, translate_official_thinker_config)
    return {
        AutoModel: {"Qwen2_5OmniConfig": full, "Qwen2_5OmniThinkerConfig": thinker},
        AutoModelForMultimodalLM: {"Qwen2_5OmniConfig": full},
        AutoModelForTextToWaveform: {"Qwen2_5OmniConfig": full},
        AutoModelForCausalLM: {"Qwen2_5OmniConfig": thinker_of_full, "Qwen2_5OmniThinkerConfig": thinker},
        AutoModelForImageTextToText: {"Qwen2_5OmniConfig": thinker_of_full, "Qwen2_5OmniThinkerConfig": thinker},
    }


OFFICIAL_HINT = (
    "This is an official Qwen2.5-Omni folder (model_type {model_type!r}): transformers has no {auto} class for it. "
    "To use omni_hf's classes: `omni-hf convert SRC DST` once (every Auto class and pipeline then resolves omni_hf's), "
    "call omni_hf.register_for_official_checkpoints() first (a process-wide opt-in), or load "
    "omni_hf.{suggestion}.from_pretrained(path) directly."
)


def _official_entry(model_class: type, config_class: type, translate, auto_name: str, refuse: bool) -> type:
    """A class to register for an official config: the opt-in's entry (builds `model_class`, the official config
    translated) or, with `refuse`, the default one that raises `OFFICIAL_HINT`. Instances are `model_class`'s."""

    def own_config(config):
        if config is None or isinstance(config, model_class.config_class):
            return config
        if refuse:
            raise ValueError(
                OFFICIAL_HINT.format(model_type=config.model_type, auto=auto_name, suggestion=model_class.__name__)
            )
        return model_class.config_class.from_dict(translate(config.to_dict()))

    def from_pretrained(cls, pretrained_model_name_or_path, *args, config=None, **kwargs):
        return model_class.from_pretrained(pretrained_model_name_or_path, *args, config=own_config(config), **kwargs)

    def from_config(cls, config, **kwargs):
        return model_class._from_config(own_config(config), **kwargs)

    name = f"{model_class.__name__}For{config_class.__name__.removesuffix('Config')}"
    return type(
        name,
        (),
        {
            "__doc__": f"{auto_name} entry for official `{config_class.model_type}` folders: {model_class.__name__}.",
            "__module__": __name__,
            "config_class": config_class,  # transformers' register() checks the name against the config class
            "from_pretrained": classmethod(from_pretrained),
            "_from_config": classmethod(from_config),
            "from_config": classmethod(from_config),
        },
    )


def _register_official(refuse: bool) -> None:
    configs = {cls.__name__: cls for cls in _official_config_classes()}
    for auto_class, models in _official_task_models().items():
        for config_name, (model_class, translate) in models.items():
            config_class = configs[config_name]
            if refuse and config_class in auto_class._model_mapping:
                continue  # transformers' own class stays: only its "Unrecognized configuration class" is replaced
            entry = _official_entry(model_class, config_class, translate, auto_class.__name__, refuse)
            auto_class.register(config_class, entry, exist_ok=True)  # transformers' configs need exist_ok


def register_official_hints() -> None:
    """The default for official folders: Auto classes transformers has no class for raise `OFFICIAL_HINT`."""
    _register_official(refuse=True)


def register_for_official_checkpoints() -> None:
    """Opt in, for this process: `AutoModel`, `AutoModelForMultimodalLM`, `AutoModelForTextToWaveform`,
    `AutoModelForCausalLM` and `AutoModelForImageTextToText` (and the pipelines built on them) load official
    Qwen2.5-Omni folders (`qwen2_5_omni`, `qwen2_5_omni_thinker`) with omni_hf's classes (the full model; the
    Thinker for the text-generating ones), replacing transformers' own for those model types.

    `AutoProcessor` keeps the official folder's `processor_class` (transformers' `Qwen2_5OmniProcessor`, which
    needs torchvision); pass `processor=OmniProcessor.from_pretrained(path)` to a pipeline to use omni_hf's."""
    global _OFFICIAL_REGISTERED
    register_auto_classes()
    if not _OFFICIAL_REGISTERED:
        _register_official(refuse=False)
        _OFFICIAL_REGISTERED = True
