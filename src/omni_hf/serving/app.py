"""The OpenAI-compatible app: `POST /v1/chat/completions` (text and speech, streamed as SSE or whole), `GET /v1/models`,
`GET /health`. `create_app(model, processor)` returns a FastAPI app for any ASGI server; `omni-hf serve` runs it
with uvicorn. Every request runs on the shared `BatchScheduler` (batched with the others); a client that disconnects
is cancelled at once, a full server answers 429 with `Retry-After`.

`app.state.omni` ([`ServerState`]) holds the model, processor, limits, engine and auth check, for extra routes: when a
module `omni_hf.serving.realtime` with `add_realtime_routes(app)` exists, it is called.
"""

import asyncio
import base64
import contextlib
import hmac
import importlib
import inspect
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pydantic
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers.utils import logging

from ..omni.events import AudioChunk, StreamStats, TextDelta
from .audio_encoding import encode_audio, pcm16_bytes
from .cross_site import CrossSiteGuard, is_json
from .protocol import (
    ChatCompletionRequest,
    ConversationBuilder,
    RequestError,
    ServerLimits,
    check_request,
    request_error,
)
from .scheduler import BatchScheduler, ReplyRequest, RequestTimeout, ServerBusy
from .tools import ToolCallParser, check_tool_choice, check_tools, parse_tool_calls, tools_system_prompt

logger = logging.get_logger(__name__)


@dataclass
class ServerState:
    """What every route shares (`app.state.omni`)."""

    model: object
    processor: object
    engine: BatchScheduler
    limits: ServerLimits
    model_id: str
    api_key: str | None = None
    body_timeout: float = 30.0  # seconds to receive a request body
    max_realtime_sessions: int | None = 16
    replica: str | None = None  # set by the Ray Serve deployment: which replica answered
    created: int = field(default_factory=lambda: int(time.time()))

    def authorized(self, request: Request) -> bool:
        """Constant-time check of `Authorization: Bearer <key>` (always true without `api_key`)."""
        if self.api_key is None:
            return True
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        return hmac.compare_digest(token.encode(), self.api_key.encode())

    def speakers(self) -> list[str]:
        return list(self.model.speakers.names()) if self.model.has_talker else []

    def adapters(self) -> list[str]:
        return list(self.model.voice_adapters.names)


_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>|0x[0-9a-fA-F]{4,}")
_PATH = re.compile(r"(?<![\w.:/<>-])(?:[A-Za-z]:\\|/)(?:[\w.+~@-]+[/\\])+[\w.+~@-]*")


def public_text(message: str) -> str:
    """`message` without object addresses (`<... at 0x7f...>`, `0x7f...`) or absolute file paths (`/tmp/x/y.wav`):
    what a client may read of an internal error."""
    return _PATH.sub("<path>", _ADDRESS.sub("<object>", message))


def error_response(message: str, status: int, param=None, kind=None, code=None, headers=None) -> JSONResponse:
    """An OpenAI-style error object (its message without addresses or paths: `public_text`)."""
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": public_text(message), "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(
    model,
    processor,
    model_id: str = "omni-hf",
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    max_active: int = 8,
    window=None,
    allowed_hosts: Sequence[str] = (),
    cors_origins: Sequence[str] = (),
    max_realtime_sessions: int | None = 16,
    body_timeout: float = 30.0,
) -> FastAPI:
    """The ASGI app serving `model` (an `OmniForConditionalGeneration`) with `processor` (an `OmniProcessor`).

    Args:
        limits: input limits and the per-request timeout ([`ServerLimits`]).
        api_key: when set, `/v1/*` needs `Authorization: Bearer <api_key>`.
        max_active: replies generated at once (batched); more concurrent requests get 429.
        window: the token2wav [`StreamingWindow`].
        allowed_hosts: without `api_key`, the `Host` names served besides the loopback ones (DNS rebinding guard).
        cors_origins: browser origins allowed to call the API (any other `Origin` gets 403; see `cross_site`).
        max_realtime_sessions: `/v1/realtime` connections open at once (None: no limit); more get 429.
        body_timeout: seconds a client has to send a request's body (408 after).

    A request naming another `model` than `model_id` gets 404 `model_not_found`, as from OpenAI.
    """
    if not (isinstance(body_timeout, int | float) and body_timeout > 0):
        raise ValueError(f"body_timeout must be a positive number of seconds, got {body_timeout!r}")
    limits = limits or ServerLimits()
    engine = BatchScheduler(model.eval(), processor, max_active=max_active, window=window)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        engine.shutdown()

    app = FastAPI(title="omni-hf", version="0.1.0", lifespan=lifespan)
    app.state.omni = ServerState(
        model, processor, engine, limits, model_id, api_key, body_timeout=body_timeout,
        max_realtime_sessions=max_realtime_sessions,
    )  # fmt: skip
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"])  # fmt: skip
    app.add_middleware(  # outermost: refuses cross-site use before anything else runs
        CrossSiteGuard, allowed_hosts=None if api_key else tuple(allowed_hosts), allowed_origins=tuple(cors_origins)
    )

    @app.get("/health")
    async def health():
        state: ServerState = app.state.omni
        return {"status": "ok", "active": engine.active, "slots": engine.max_active, "replica": state.replica}

    @app.get("/v1/models")
    async def models(request: Request):
        state: ServerState = request.app.state.omni
        if not state.authorized(request):
            return error_response("Invalid or missing API key", 401, kind="authentication_error")
        entry = {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "omni-hf"}
        return {"object": "list", "data": [entry | {"voices": state.speakers(), "voice_adapters": state.adapters()}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        state: ServerState = request.app.state.omni
        if not state.authorized(request):
            return error_response("Invalid or missing API key", 401, kind="authentication_error")
        if not is_json(request.headers.get("content-type")):  # a web page can post text/plain without a preflight
            return error_response("Content-Type must be application/json", 415, code="unsupported_media_type")
        try:
            body = await _read_body(request, state.limits.max_body_bytes, state.body_timeout)
            chat = _parse(body)
            if chat.model != state.model_id:
                raise RequestError(
                    f"The model {chat.model!r} does not exist: this server serves {state.model_id!r}",
                    "model",
                    status=404,
                    code="model_not_found",
                )
            check_request(chat, state.speakers(), state.adapters(), state.limits)
            if chat.stream and chat.speaks and chat.audio.format != "pcm16":
                raise RequestError("stream=true sends pcm16 audio: set audio.format to pcm16", "audio.format")
            inputs = await run_in_threadpool(_prepare_inputs, state, chat)
        except RequestError as error:
            return error_response(str(error), error.status, error.param, code=error.code)
        reply = _reply_request(state, chat, inputs)
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        try:
            job = engine.submit(reply, lambda event: loop.call_soon_threadsafe(events.put_nowait, event))
        except ServerBusy as error:
            return error_response(
                f"{error}; retry later", 429, kind="rate_limit_error", headers={"Retry-After": str(error.retry_after)}
            )
        completion = _Completion(state.model_id, chat, inputs["input_ids"].shape[1], reply.max_new_tokens)
        if chat.stream:
            return StreamingResponse(
                _sse(completion, events, job), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        return await _whole(completion, events, job, request)

    try:
        realtime = importlib.import_module(f"{__package__}.realtime")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.realtime":
            raise
    else:
        if hasattr(realtime, "add_realtime_routes"):
            _add_realtime(realtime.add_realtime_routes, app)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        """Unknown routes and methods answer OpenAI's error object, not FastAPI's `{"detail": ...}`."""
        if error.status_code == 404:
            message = f"Invalid URL ({request.method} {request.url.path})"
        elif error.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(error.detail)
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": "not_found" if error.status_code == 404 else None}}  # fmt: skip
        return JSONResponse(body, status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        logger.error(f"Unhandled error: {error!r}")
        return error_response("Internal server error", 500)

    return app


def _add_realtime(add_routes, app: FastAPI) -> None:
    """Call `add_realtime_routes(app)`, or `(app, model, processor, api_key=..., model_name=...)` when it takes them."""
    state: ServerState = app.state.omni
    parameters = inspect.signature(add_routes).parameters
    if len(parameters) == 1:
        add_routes(app)
        return
    given = (("api_key", state.api_key), ("model_name", state.model_id), ("engine", state.engine),
             ("max_sessions", state.max_realtime_sessions), ("limits", state.limits))  # fmt: skip
    kwargs = {k: v for k, v in given if k in parameters}
    add_routes(app, state.model, state.processor, **kwargs)


# -------------------------------------------------------------------- request handling
async def _read_body(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The request body, refused (413) past `limit` bytes and (408) when it takes more than `timeout` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"Request body of {declared} bytes is over the limit of {limit}", status=413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(f"Request body is over the limit of {limit} bytes", status=413)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            f"The request body was not received within {timeout:g} s", status=408, code="request_timeout"
        ) from None
    return b"".join(chunks)


def _parse(body: bytes) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except pydantic.ValidationError as error:
        raise request_error(error) from None


def _prepare_inputs(state: ServerState, chat: ChatCompletionRequest) -> dict:
    builder = ConversationBuilder(state.limits)
    try:
        conversation = with_tools(builder(chat.messages), chat, state.processor.default_system_prompt)
        try:
            inputs = state.processor.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
        except (ValueError, OSError, RuntimeError) as error:
            logger.info(f"Messages could not be processed: {error!r}")
            raise RequestError(f"The messages could not be processed: {public_text(str(error))}", "messages") from None
    except ValueError as error:
        if isinstance(error, RequestError):
            raise
        raise RequestError(str(error), "messages") from None
    finally:
        builder.close()
    return {k: v.to(state.model.thinker.device) if hasattr(v, "to") else v for k, v in dict(inputs).items()}


def with_tools(conversation: list[dict], chat: ChatCompletionRequest, default_system: str) -> list[dict]:
    """The conversation with the request's `tools` in its system message, as Qwen2.5 models are prompted for tools
    (`omni_hf.serving.tools`); unchanged without tools or with `tool_choice` "none"."""
    try:
        tools = check_tools(chat.tools)
        choice = check_tool_choice(chat.tool_choice, tools)
    except ValueError as error:
        raise RequestError(str(error), "tools") from None
    if not tools or choice == "none":
        return conversation
    if conversation and conversation[0]["role"] == "system":
        system = "".join(b.get("text", "") for b in conversation[0]["content"] if b.get("type") == "text")
        conversation = conversation[1:]
    else:
        system = default_system
    prompt = tools_system_prompt(system, tools, choice)
    return [{"role": "system", "content": [{"type": "text", "text": prompt}]}, *conversation]


def _uses_tools(chat: ChatCompletionRequest) -> bool:
    return bool(chat.tools) and chat.tool_choice != "none"


def _tool_calls(calls: list[dict]) -> list[dict]:
    return [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls]  # fmt: skip


def _reply_request(state: ServerState, chat: ChatCompletionRequest, inputs: dict) -> ReplyRequest:
    temperature = chat.temperature
    return ReplyRequest(
        inputs=inputs,
        speaker=chat.audio.voice if chat.speaks else None,
        voice_adapter=chat.voice_adapter,
        max_new_tokens=chat.max_completion_tokens or chat.max_tokens or state.limits.max_tokens,
        talker_max_new_tokens=state.limits.talker_max_new_tokens,
        do_sample=temperature is not None and temperature > 0,
        temperature=temperature,
        top_p=chat.top_p,
        seed=chat.seed,
        timeout=state.limits.timeout,
    )


class _Completion:
    """Builds the OpenAI objects of one reply."""

    def __init__(self, model_id: str, chat: ChatCompletionRequest, prompt_tokens: int, max_tokens: int | None = None):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.audio_id = f"audio_{uuid.uuid4().hex}"
        self.model_id, self.chat, self.prompt_tokens = model_id, chat, prompt_tokens
        self.max_tokens = max_tokens  # the reply's token limit: the request's, else the server's default
        self.created = int(time.time())

    def chunk(self, delta: dict, finish_reason=None, usage=None) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if usage is None else [],
        }
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    def usage(self, stats: StreamStats) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": stats.text_tokens,
            "total_tokens": self.prompt_tokens + stats.text_tokens,
        }

    def finish_reason(self, stats: StreamStats) -> str:
        limit = self.chat.max_completion_tokens or self.chat.max_tokens or self.max_tokens
        return "length" if limit is not None and stats.text_tokens >= limit else "stop"

    def error(self, error: BaseException) -> tuple[str, int]:
        if isinstance(error, RequestTimeout):
            return str(error), 504
        if isinstance(error, ValueError):
            return public_text(str(error)), 400
        logger.error(f"Generation failed: {error!r}")
        return "Generation failed (see the server log)", 500


async def _sse(completion: _Completion, events: asyncio.Queue, job):
    """The SSE stream of one reply; closing it (client gone) cancels the job at once. With `tools`, `<tool_call>`
    blocks are held back from the content and sent as `tool_calls` deltas at the end (finish_reason "tool_calls")."""
    speaks = completion.chat.speaks
    parser = ToolCallParser() if _uses_tools(completion.chat) else None

    def content(text):
        delta = {"content": text}
        if speaks:
            delta["audio"] = {"id": completion.audio_id, "transcript": text}
        return completion.chunk(delta)

    try:
        yield completion.chunk({"role": "assistant", "content": ""})
        while True:
            event = await events.get()
            if isinstance(event, TextDelta):
                text = event.text if parser is None else parser.feed(event.text)
                if text:
                    yield content(text)
            elif isinstance(event, AudioChunk):
                data = base64.b64encode(pcm16_bytes(event.audio)).decode()
                yield completion.chunk({"audio": {"id": completion.audio_id, "data": data}})
            elif isinstance(event, StreamStats):
                finish_reason = completion.finish_reason(event)
                if parser is not None:
                    rest = parser.finish()
                    if rest:
                        yield content(rest)
                    for index, call in enumerate(_tool_calls(parser.calls)):
                        yield completion.chunk({"tool_calls": [{"index": index, **call}]})
                    finish_reason = "tool_calls" if parser.calls else finish_reason
                yield completion.chunk({}, finish_reason)
                options = completion.chat.stream_options
                if options is not None and options.include_usage:
                    yield completion.chunk({}, usage=completion.usage(event))
                yield "data: [DONE]\n\n"
                return
            else:
                message, status = completion.error(event)
                kind = "invalid_request_error" if status < 500 else "server_error"
                yield f"data: {json.dumps({'error': {'message': message, 'type': kind, 'code': status}})}\n\n"
                return
    finally:
        job.cancel()


async def _disconnected(request: Request) -> None:
    """Return when the client has gone (its body was read: the next ASGI message is `http.disconnect`)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _whole(completion: _Completion, events: asyncio.Queue, job, request: Request):
    """The whole reply as one `chat.completion`; cancelled as soon as the client goes away (the engine stops it
    at its next tick)."""
    text, audio = [], []
    gone = asyncio.ensure_future(_disconnected(request))
    get = None
    try:
        while True:
            get = asyncio.ensure_future(events.get())
            await asyncio.wait((get, gone), return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                job.cancel()
                logger.info("Client disconnected: its reply is cancelled")
                return error_response("Client disconnected", 499)
            event = get.result()
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, AudioChunk):
                audio.append(event.audio)
            elif isinstance(event, StreamStats):
                break
            else:
                message, status = completion.error(event)
                return error_response(message, status)
    finally:
        job.cancel()
        gone.cancel()
        if get is not None:
            get.cancel()
    transcript = "".join(text)
    message = {"role": "assistant", "content": transcript}
    finish_reason = completion.finish_reason(event)
    if _uses_tools(completion.chat):
        shown, calls = parse_tool_calls(transcript)
        if calls:
            message = {"role": "assistant", "content": shown or None, "tool_calls": _tool_calls(calls)}
            finish_reason = "tool_calls"
    if completion.chat.speaks:
        waveform = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
        data = base64.b64encode(encode_audio(waveform, completion.chat.audio.format)).decode()
        expires = int(time.time()) + 3600
        message["audio"] = {"id": completion.audio_id, "data": data, "transcript": transcript, "expires_at": expires}
    return {
        "id": completion.id,
        "object": "chat.completion",
        "created": completion.created,
        "model": completion.model_id,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": completion.usage(event),
    }


__all__ = ["ServerState", "create_app", "error_response", "public_text"]
