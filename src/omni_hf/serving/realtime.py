"""`/v1/realtime`: the OpenAI Realtime API over a WebSocket, served from chunked prefill (`OmniConversation`).

Usage (on the app of `omni-hf serve`, or any FastAPI app):

```python
>>> from fastapi import FastAPI
>>> from omni_hf.serving.realtime import add_realtime_routes
>>> app = FastAPI()
>>> add_realtime_routes(app, model, processor, api_key=None, generation_kwargs={"thinker_max_new_tokens": 256})
>>> # uvicorn.run(app, host="127.0.0.1", port=8000); then, with the openai package:
>>> # async with AsyncOpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").realtime.connect(model="omni") as c:
```

Audio is pcm16 mono at 24 kHz both ways (resampled to 16 kHz for the audio encoder); appended audio is prefilled in
2 s encoder chunks as it arrives, so after the end of speech only the last chunk and the prompt suffix remain.
"""

import asyncio
import contextlib
import hmac
import logging

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from .cross_site import origin_allowed
from .realtime_events import EventError, error_event
from .realtime_session import RealtimeSession
from .scheduler import BatchScheduler

logger = logging.getLogger(__name__)


def _engine_of(app: FastAPI, model, processor):
    """The engine serving `model` on `app`: the OpenAI-compatible server's (`create_app`), else one made for the
    realtime routes, shared by all of them."""
    state = getattr(app.state, "omni", None)
    if state is not None and getattr(state, "model", None) is model:
        return state.engine
    if not hasattr(app.state, "realtime_engines"):
        app.state.realtime_engines = {}
    if id(model) not in app.state.realtime_engines:
        app.state.realtime_engines[id(model)] = BatchScheduler(model.eval(), processor)
    return app.state.realtime_engines[id(model)]


def _authorized(websocket: WebSocket, api_key: str | None) -> bool:
    if api_key is None:
        return True
    header = websocket.headers.get("authorization", "")
    offered = header.removeprefix("Bearer ").strip()
    for protocol in websocket.headers.get("sec-websocket-protocol", "").split(","):  # browsers cannot set headers
        if protocol.strip().startswith("openai-insecure-api-key."):
            offered = protocol.strip().removeprefix("openai-insecure-api-key.")
    return hmac.compare_digest(offered.encode(), api_key.encode())


def add_realtime_routes(app: FastAPI, model, processor, *, api_key: str | None = None, model_name: str = "omni_hf",
                        generation_kwargs: dict | None = None, seed: int | None = 0, path: str = "/v1/realtime",
                        engine: BatchScheduler | None = None, allowed_origins=()):  # fmt: skip
    """Register the Realtime WebSocket on `app`.

    Args:
        model, processor: an `OmniForConditionalGeneration` (eval mode) and its `OmniProcessor`.
        api_key: required as `Authorization: Bearer <key>` (or the `openai-insecure-api-key.<key>` subprotocol)
            when set.
        model_name: the name reported in `session.created`.
        generation_kwargs: defaults of every reply, e.g. `{"thinker_max_new_tokens": 256, "thinker_do_sample": False}`.
        seed: seed of each reply's noise and sampling (replies are reproducible); None leaves them unseeded.
        path: the route.
        allowed_origins: browser origins allowed besides the page's own (`Origin` equal to the `Host`); a handshake
            from any other origin is refused (`omni_hf.serving.cross_site`).
        engine: the `BatchScheduler` running the model (default: the server's when `app` is `create_app`'s, else one
            made here): every connection's model work runs on it, beside the HTTP requests, with no lock.

    Open sessions are listed in `app.state.realtime_sessions` (id → `RealtimeSession`); a session is freed when its
    client disconnects, even in the middle of a reply.
    """
    if not hasattr(app.state, "realtime_sessions"):
        app.state.realtime_sessions = {}
    engine = engine or _engine_of(app, model, processor)

    @app.websocket(path)
    async def realtime(websocket: WebSocket):
        protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"), allowed_origins):
            await websocket.close(code=1008, reason="cross-site connection refused")
            return
        if not _authorized(websocket, api_key):
            await websocket.close(code=1008, reason="invalid API key")
            return
        await websocket.accept(subprotocol="realtime" if "realtime" in protocols else None)
        beta = "realtime=v1" in websocket.headers.get("openai-beta", "") or "openai-beta.realtime-v1" in protocols
        outgoing: asyncio.Queue = asyncio.Queue()

        async def send(event: dict):
            outgoing.put_nowait(event)

        async def sender():
            while True:
                event = await outgoing.get()
                await websocket.send_json(event)

        session = RealtimeSession(model, processor, send, engine, model_name, beta, generation_kwargs, seed)
        app.state.realtime_sessions[session.id] = session
        writer = asyncio.create_task(sender())
        try:
            await session.open()
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("text") if message.get("text") is not None else message.get("bytes")
                await session.handle(data)
                if writer.done():
                    break
        except WebSocketDisconnect:
            pass
        except Exception as error:  # a bug must not leave the session behind; tell the client if it is still there
            logger.exception("realtime session %s failed", session.id)
            with contextlib.suppress(Exception):
                await websocket.send_json(error_event(EventError(f"Internal error: {error}", code="server_error")))
        finally:
            await session.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            app.state.realtime_sessions.pop(session.id, None)
            logger.info("realtime session %s closed", session.id)

    return realtime


__all__ = ["add_realtime_routes"]
