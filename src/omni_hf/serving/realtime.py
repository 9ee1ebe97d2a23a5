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
from fastapi.responses import JSONResponse

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
    offered = header[7:].strip() if header.lower().startswith("bearer ") else ""  # as HTTP: any case of "Bearer"
    for protocol in websocket.headers.get("sec-websocket-protocol", "").split(","):  # browsers cannot set headers
        if protocol.strip().startswith("openai-insecure-api-key."):
            offered = protocol.strip().removeprefix("openai-insecure-api-key.")
    return hmac.compare_digest(offered.encode(), api_key.encode())


async def _refuse(websocket: WebSocket, status: int, message: str, kind: str, code: str, headers=None) -> None:
    """Refuse a handshake with an HTTP answer like the API's (`status`, OpenAI error object) where the server can send
    one (`websocket.http.response`), else close it with code 1008 (policy) or 1013 (try again later)."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    try:
        await websocket.send_denial_response(JSONResponse(body, status_code=status, headers=headers))
    except RuntimeError:  # the ASGI server cannot send an HTTP answer to a handshake
        await websocket.close(code=1013 if status == 429 else 1008, reason=message[:120])


def add_realtime_routes(app: FastAPI, model, processor, *, api_key: str | None = None, model_name: str = "omni_hf",
                        generation_kwargs: dict | None = None, seed: int | None = 0, path: str = "/v1/realtime",
                        engine: BatchScheduler | None = None, allowed_origins=(),
                        max_sessions: int | None = None, limits=None):  # fmt: skip
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
        max_sessions: open connections allowed at once (None: no limit); one more is refused with HTTP 429
            (`rate_limit_error`, `Retry-After`) before it is accepted.
        limits: the server's `ServerLimits` (`omni-hf serve`): `max_tokens` caps each response's
            `max_output_tokens`, `talker_max_new_tokens` its speech codes, `timeout` its seconds (then it ends as
            cancelled with reason "timeout"). None: no caps beyond `generation_kwargs`.
        engine: the `BatchScheduler` running the model (default: the server's when `app` is `create_app`'s, else one
            made here): every connection's model work runs on it, beside the HTTP requests, with no lock.

    Open sessions are listed in `app.state.realtime_sessions` (id → `RealtimeSession`); a session is freed when its
    client disconnects, even in the middle of a reply.
    """
    if not hasattr(app.state, "realtime_sessions"):
        app.state.realtime_sessions = {}
    if max_sessions is not None and (not isinstance(max_sessions, int) or max_sessions < 1):
        raise ValueError(f"max_sessions must be a positive integer or None, got {max_sessions!r}")
    engine = engine or _engine_of(app, model, processor)
    caps = {}
    if limits is not None:
        caps = {"max_tokens": limits.max_tokens, "talker_max_new_tokens": limits.talker_max_new_tokens,
                "timeout": limits.timeout}  # fmt: skip
    opening = set()  # handshakes that hold a session place (checked and taken with no await between)

    @app.websocket(path)
    async def realtime(websocket: WebSocket):
        protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"), allowed_origins):
            await websocket.close(code=1008, reason="cross-site connection refused")
            return
        if not _authorized(websocket, api_key):
            await _refuse(websocket, 401, "Invalid or missing API key", "authentication_error", "invalid_api_key")
            return
        if max_sessions is not None and len(app.state.realtime_sessions) + len(opening) >= max_sessions:
            message = f"All {max_sessions} realtime sessions are in use; retry later"
            await _refuse(websocket, 429, message, "rate_limit_error", "too_many_sessions", {"Retry-After": "1"})
            return
        place = object()
        opening.add(place)
        try:
            await websocket.accept(subprotocol="realtime" if "realtime" in protocols else None)
        except BaseException:
            opening.discard(place)
            raise
        beta = "realtime=v1" in websocket.headers.get("openai-beta", "") or "openai-beta.realtime-v1" in protocols
        outgoing: asyncio.Queue = asyncio.Queue()

        async def send(event: dict):
            outgoing.put_nowait(event)

        async def sender():
            while True:
                event = await outgoing.get()
                await websocket.send_json(event)

        session = RealtimeSession(model, processor, send, engine, model_name, beta, generation_kwargs, seed, caps)
        app.state.realtime_sessions[session.id] = session
        opening.discard(place)
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
        except Exception:  # a bug must not leave the session behind; tell the client if it is still there
            logger.exception("realtime session %s failed", session.id)
            with contextlib.suppress(Exception):
                problem = EventError("Internal error (see the server log); the session is closed", code="server_error")
                await websocket.send_json(error_event(problem))
        finally:
            await session.close()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            app.state.realtime_sessions.pop(session.id, None)
            opening.discard(place)
            logger.info("realtime session %s closed", session.id)

    return realtime


__all__ = ["add_realtime_routes"]
