"""`omni-hf serve`: an OpenAI-compatible server streaming speech to many clients, their replies batched together."""

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
