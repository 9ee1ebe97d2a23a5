"""The Thinker of a full model folder, for `AutoModelForCausalLM` / `AutoModelForImageTextToText` and text pipelines.

transformers' Auto classes instantiate the class registered for the folder's config class (`OmniConfig` here) and pass
that config; `OmniThinkerForCausalLM` takes the Thinker's part of it and its `thinker.*` weights. The result is a plain
[`OmniThinkerForConditionalGeneration`] (saved alone, it is a Thinker checkpoint).
"""

from ..thinker.modeling_thinker import OmniThinkerForConditionalGeneration
from .configuration_omni import OmniConfig


class OmniThinkerForCausalLM(OmniThinkerForConditionalGeneration):
    """[`OmniThinkerForConditionalGeneration`] built from a full model's [`OmniConfig`] (its `thinker_config`).

    Example:

    ```python
    >>> from transformers import AutoModelForCausalLM
    >>> thinker = AutoModelForCausalLM.from_pretrained("path/to/omni_hf_full_model")  # after `import omni_hf`
    ```"""

    config_class = OmniConfig

    def __init__(self, config):
        thinker_config = getattr(config, "thinker_config", None)  # an OmniConfig (whichever copy of its module)
        super().__init__(thinker_config if thinker_config is not None else config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load the Thinker of a full folder (ours or official): its `thinker.` prefix is stripped."""
        kwargs.setdefault("key_mapping", {r"^thinker\.": ""})
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


__all__ = ["OmniThinkerForCausalLM"]
