"""The base `PreTrainedModel` of omni_hf's transformers models and Whisper's sinusoid table."""

import math
from pathlib import Path

import torch
from transformers import PreTrainedModel

from .adapter_switch import AdapterSwitchMixin
from .staged_save import check_complete_if_local, staged_save


def sinusoid_table(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal positions `(length, channels)`: sines in the first half, cosines in the second."""
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2).float())
    scaled = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


class OmniPreTrainedModel(AdapterSwitchMixin, PreTrainedModel):
    """Shared settings of the omni_hf Thinker models."""

    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = False
    _supports_attention_backend = True
    _no_split_modules = ["WhisperEncoderLayer", "OmniVisionBlock", "Qwen2DecoderLayer"]

    @property
    def is_gradient_checkpointing(self) -> bool:
        """transformers' deprecated alias, answered without its FutureWarning: PEFT 0.21 reads it on every
        `PeftModel(...)`, so each voice adapter load and recipe warned about code that is not the user's."""
        return self.is_activation_checkpointing

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing a local folder left half-written by an interrupted save."""
        check_complete_if_local(pretrained_model_name_or_path, kwargs.get("subfolder", ""))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, staged (`omni_hf.common.staged_save`): written whole beside
        `save_directory`, then moved in; an interrupted save never leaves a loadable mix, and a user's other files
        in the folder are kept while the previous model's files that this save does not write are removed."""
        if not kwargs.get("is_main_process", True):  # other ranks write nothing
            return super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("push_to_hub"):  # the repo is named after the destination, not the staging folder
            kwargs.setdefault("repo_id", Path(save_directory).name)
        with staged_save(save_directory, "model") as stage:
            return self.write_pretrained(stage, *args, **kwargs)

    def write_pretrained(self, directory, *args, **kwargs):
        """Write the model's files into the fresh folder `directory` (subclasses add theirs after `super()`)."""
        return super().save_pretrained(directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        # Constant (non-persistent) buffers: rotary frequencies, sinusoid tables. Models are built on the meta
        # device when loading, so these are recomputed here rather than trusted from `__init__`.
        if hasattr(module, "constant_buffers"):
            for name, value in module.constant_buffers().items():
                getattr(module, name).copy_(value)


__all__ = ["OmniPreTrainedModel", "sinusoid_table"]
