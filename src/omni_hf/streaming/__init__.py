"""Streaming: text and speech generated concurrently, chunked token2wav, chunked prefill."""

from ..token2wav.streaming import StreamingWindow, Token2WavStream
from .decoding import StepDecoder
from .events import AudioChunk, StreamStats, TextDelta

__all__ = ["AudioChunk", "StepDecoder", "StreamStats", "StreamingWindow", "TextDelta", "Token2WavStream"]
