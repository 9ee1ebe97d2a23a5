"""The full model and its conductor: one request object and one loop for `generate`, `stream` and `OmniSession`."""

from ..token2wav.streaming import StreamingWindow
from .configuration_omni import OmniConfig
from .decoding import StepDecoder
from .events import AudioChunk, StreamStats, TextDelta
from .modeling_omni import OmniForConditionalGeneration
from .session import OmniSession, StreamingLogMel

__all__ = [
    "AudioChunk",
    "OmniConfig",
    "OmniForConditionalGeneration",
    "OmniSession",
    "StepDecoder",
    "StreamStats",
    "StreamingLogMel",
    "StreamingWindow",
    "TextDelta",
]
