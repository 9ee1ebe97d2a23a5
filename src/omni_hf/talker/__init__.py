"""The Talker: a dual-track decoder reading the Thinker's hidden states and text, predicting speech codes."""

from .configuration_talker import OmniTalkerConfig
from .modeling_talker import OmniTalkerForConditionalGeneration, OmniTalkerModel

__all__ = ["OmniTalkerConfig", "OmniTalkerForConditionalGeneration", "OmniTalkerModel"]
