"""Serving omni_hf over the network: `omni-hf serve`, an OpenAI-compatible server whose concurrent replies are batched
together, and the Realtime WebSocket endpoint (`serving.realtime`)."""

from .app import ServerState, create_app, error_response
from .protocol import ChatCompletionRequest, ServerLimits
from .scheduler import BatchScheduler, ReplyRequest, ServerBusy

__all__ = [
    "BatchScheduler",
    "ChatCompletionRequest",
    "ReplyRequest",
    "ServerBusy",
    "ServerLimits",
    "ServerState",
    "create_app",
    "error_response",
]
