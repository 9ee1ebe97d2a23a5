"""The per-connection state machine of `/v1/realtime`, on an `OmniConversation` (chunked prefill, multi-turn).

Client events are handled on the event loop at once (checks, VAD, resampling); the model work of a connection runs
in order on the server's one engine (`BatchScheduler`), beside every other request: its chunk prefill through
`engine.call`, its replies through `engine.submit_stream` (stepped one event per tick beside the batched HTTP
replies, so connections answer together). `response.cancel` or barge-in (speech during a reply, server VAD) sets the
reply's cancel flag, checked by the engine between the reply's steps; the part already generated stays in the
conversation.
"""

import asyncio
import collections
import contextlib
import logging
import threading

import numpy as np
import torch

from ..omni.conversation import OmniConversation
from ..omni.events import AudioChunk, StreamStats, TextDelta
from .realtime_events import (
    BETA_NAMES,
    RATE,
    EventError,
    SessionSettings,
    audio_b64,
    error_event,
    new_id,
    parse_client_event,
    parse_user_item,
    update_settings,
)
from .scheduler import ServerBusy
from .vad import EnergyVAD, StreamingResampler

logger = logging.getLogger(__name__)


class ActiveResponse:
    """One response being generated: its ids, and the flag that stops it (`reason`: why)."""

    def __init__(self):
        self.id, self.item_id = new_id("resp"), new_id("item")
        self.cancel = threading.Event()
        self.reason = None
        self.finished = asyncio.Event()

    def stop(self, reason: str):
        if not self.cancel.is_set():
            self.reason = reason
            self.cancel.set()


class RealtimeSession:
    """One `/v1/realtime` connection.

    Args:
        model, processor: the served `OmniForConditionalGeneration` and its `OmniProcessor`.
        send: called with every server event (a dict), from the event loop.
        engine: the `BatchScheduler` that runs every model forward of the server.
        model_name: reported in `session.created`.
        beta: use the beta event names (`OpenAI-Beta: realtime=v1`).
        generation_kwargs: defaults for every reply (e.g. `thinker_max_new_tokens`, `thinker_do_sample`).
        seed: seed of each reply's token2wav noise (and sampling), so a reply is reproducible; None: not seeded.
    """

    def __init__(self, model, processor, send, engine, model_name: str = "omni_hf", beta: bool = False,
                 generation_kwargs: dict | None = None, seed: int | None = 0):  # fmt: skip
        self.model, self.processor, self.send, self.engine = model, processor, send, engine
        self.model_name, self.beta, self.seed = model_name, beta, seed
        self.generation_kwargs = dict(generation_kwargs or {})
        self.id = new_id("sess")
        speakers = list(model.speakers) if model.has_talker else []
        self.settings = SessionSettings(voice="Chelsie" if "Chelsie" in speakers or not speakers else speakers[0])
        self.settings.audio_output = model.has_talker
        self.conversation: OmniConversation | None = None
        self.loop = asyncio.get_running_loop()
        self.jobs: asyncio.Queue = asyncio.Queue()
        self.worker = asyncio.create_task(self._work())
        self.response: ActiveResponse | None = None
        self.capturing = False  # a spoken user message is open in the conversation
        self.captured_ms = 0
        self.received = 0  # 24 kHz samples received since the connection opened
        self.closed = False
        self._reset_input()

    # ---------------------------------------------------------------- events in
    async def open(self):
        await self.send({"type": "session.created", "event_id": new_id("event"), "session": self._session()})

    async def handle(self, raw: str | bytes) -> None:
        """Take one client event; a bad one gets an `error` event and changes nothing."""
        event = None
        try:
            event = parse_client_event(raw)
            await getattr(self, "_on_" + event["type"].replace(".", "_"))(event)
        except EventError as error:
            await self.send(error_event(error))
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as error:  # a field of a wrong shape
            kind = event.get("type") if isinstance(event, dict) else None
            logger.info("realtime %s event could not be applied: %r", kind, error)
            message = f"The {kind} event has a field of the wrong type or shape; see the Realtime API reference"
            await self.send(error_event(EventError(message, event_id=(event or {}).get("event_id"))))

    async def _on_session_update(self, event):
        speakers = list(self.model.speakers) if self.model.has_talker else []
        new = update_settings(self.settings, event.get("session"), speakers, event.get("event_id"))
        if new.instructions != self.settings.instructions and self.conversation is not None:
            raise EventError(
                "instructions (the system prompt) can only change before the conversation's first message",
                param="session.instructions",
                event_id=event.get("event_id"),
            )
        if new.audio_output and not self.model.has_talker:
            raise EventError("This model has no talker: only text output", param="session.output_modalities")
        turn_changed = new.turn_detection != self.settings.turn_detection
        self.settings = new
        if turn_changed:
            if self.capturing:  # the open spoken message is dropped, as by input_audio_buffer.clear
                self.jobs.put_nowait(("clear", None))
            self._reset_input()
        await self.send({"type": "session.updated", "event_id": new_id("event"), "session": self._session()})

    async def _on_input_audio_buffer_append(self, event):
        samples = event["samples"]
        start_ms = self.received * 1000 // RATE
        self.received += samples.size
        audio = self.resampler.push(samples)
        turn = self.settings.turn_detection
        if turn is None:  # manual: everything appended is the user's turn
            await self._capture(audio, start_ms)
            return
        self.ring.append(audio)  # the prefix padding (and this packet)
        while sum(a.size for a in self.ring) > self.ring_samples + audio.size:
            self.ring.popleft()
        for found in self.vad.push(samples):
            at_ms = found.sample * 1000 // RATE
            if found.kind == "speech_started" and not self.capturing:
                await self.send(self._event("input_audio_buffer.speech_started", audio_start_ms=at_ms,
                                            item_id=self.item_id))  # fmt: skip
                if turn.interrupt_response and self.response is not None:
                    self.response.stop("turn_detected")
                await self._capture(np.concatenate(list(self.ring)), at_ms)
                self.ring.clear()
            elif found.kind == "speech_stopped" and self.capturing:
                await self.send(self._event("input_audio_buffer.speech_stopped", audio_end_ms=at_ms,
                                            item_id=self.item_id))  # fmt: skip
                await self._commit(event.get("event_id"))
                if turn.create_response:
                    await self._on_response_create({})
        if self.capturing and self.ring:  # speech continues: the packet goes in (the ring had it otherwise)
            await self._capture(np.concatenate(list(self.ring)), start_ms)
            self.ring.clear()

    async def _on_input_audio_buffer_commit(self, event):
        if not self.capturing or self.captured_ms < 100:
            raise EventError(
                f"buffer too small: expected at least 100ms of audio, got {self.captured_ms}ms",
                code="input_audio_buffer_commit_empty",
                event_id=event.get("event_id"),
            )
        await self._commit(event.get("event_id"))

    async def _on_input_audio_buffer_clear(self, event):
        if self.capturing:
            self.jobs.put_nowait(("clear", None))
        self._reset_input()
        await self.send(self._event("input_audio_buffer.cleared"))

    async def _on_conversation_item_create(self, event):
        parts = parse_user_item(event)
        if self.capturing:
            raise EventError(
                "Commit or clear the input audio buffer before adding an item", event_id=event.get("event_id")
            )
        item_id = event["item"].get("id") or new_id("item")
        self.jobs.put_nowait(("item", parts))
        content = [{"type": "input_text", "text": p} if k == "text" else {"type": f"input_{k}"} for k, p in parts]
        await self.send(self._event("conversation.item.created", previous_item_id=None,
                                    item=self._item(item_id, "user", content)))  # fmt: skip

    async def _on_response_create(self, event):
        if (
            self.response is not None and not self.response.cancel.is_set()
        ):  # a cancelled one is ending: queue after it
            raise EventError(
                f"Conversation already has an active response in progress: {self.response.id}",
                code="conversation_already_has_active_response",
                event_id=event.get("event_id"),
            )
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise EventError("`response` must be an object", param="response", event_id=event.get("event_id"))
        modalities = options.get("output_modalities", options.get("modalities"))
        audio = self.settings.audio_output if modalities is None else "audio" in modalities
        audio_options = options.get("audio") or {}
        output = audio_options.get("output") or {} if isinstance(audio_options, dict) else None
        if not isinstance(output, dict):
            raise EventError("`response.audio.output` must be an object", param="response.audio",
                             event_id=event.get("event_id"))  # fmt: skip
        voice = options.get("voice", output.get("voice", self.settings.voice))
        if not isinstance(voice, str):
            raise EventError(f"voice must be a string, got {type(voice).__name__}", param="response.voice",
                             event_id=event.get("event_id"))  # fmt: skip
        if modalities is not None and (not isinstance(modalities, list) or not modalities
                                       or not {*map(str, modalities)} <= {"text", "audio"}):  # fmt: skip
            raise EventError(f"output_modalities must be a list of 'text' / 'audio', got {modalities!r}",
                             param="response.output_modalities", event_id=event.get("event_id"))  # fmt: skip
        if audio and voice not in self.model.speakers:
            raise EventError(f"Unknown voice {voice!r}", param="response.voice", event_id=event.get("event_id"))
        limit = _max_tokens(options.get("max_output_tokens", options.get("max_response_output_tokens")), event)
        self.response = ActiveResponse()
        await self.send(self._event("response.created", response=self._response(self.response, "in_progress")))
        self.jobs.put_nowait(("respond", (self.response, audio, voice, limit or self.settings.max_output_tokens)))

    async def _on_response_cancel(self, event):
        if self.response is None:
            raise EventError("There is no active response to cancel", code="response_cancel_not_active",
                             event_id=event.get("event_id"))  # fmt: skip
        self.response.stop("client_cancelled")

    # ---------------------------------------------------------------- input state
    def _reset_input(self):
        turn = self.settings.turn_detection
        self.resampler = StreamingResampler(RATE, self.processor.feature_extractor.sampling_rate)
        self.vad = None if turn is None else EnergyVAD(RATE, turn.threshold, turn.silence_duration_ms)
        self.ring = collections.deque()
        self.ring_samples = 0 if turn is None else turn.prefix_padding_ms * 16
        self.capturing, self.captured_ms, self.item_id = False, 0, new_id("item")

    async def _capture(self, audio: np.ndarray, start_ms: int):
        if not self.capturing:
            self.capturing, self.captured_ms, self.audio_start_ms = True, 0, start_ms
            self.jobs.put_nowait(("begin", None))
        self.captured_ms += audio.size * 1000 // self.processor.feature_extractor.sampling_rate
        self.jobs.put_nowait(("audio", audio))

    async def _commit(self, event_id):
        item_id = self.item_id
        self.jobs.put_nowait(("commit", None))
        self.capturing, self.item_id = False, new_id("item")
        self.resampler = StreamingResampler(RATE, self.processor.feature_extractor.sampling_rate)
        await self.send(self._event("input_audio_buffer.committed", previous_item_id=None, item_id=item_id))
        item = self._item(item_id, "user", [{"type": "input_audio", "transcript": None}])
        await self.send(self._event("conversation.item.created", previous_item_id=None, item=item))

    # ---------------------------------------------------------------- model work (worker thread)
    async def _work(self):
        while True:
            kind, payload = await self.jobs.get()
            if kind == "close":
                return
            try:
                await asyncio.to_thread(self._run_reporting, kind, payload)
            except Exception as error:  # reported to the client; the connection stays usable
                logger.warning("realtime %s failed: %r", kind, error)
                shown = _client_error(error)
                await self.send(error_event(shown))
                if kind == "respond":
                    if self.response is payload[0]:
                        self.response = None
                    failed = self._response(payload[0], "failed")
                    failed["status_details"] = {"type": "failed", "error": {"message": str(shown)}}
                    await self.send(self._event("response.done", response=failed))
            finally:
                if kind == "respond":
                    payload[0].finished.set()
                    if self.response is payload[0]:
                        self.response = None

    def _run_reporting(self, kind, payload):
        """`_run`, with StopIteration turned into RuntimeError: a StopIteration cannot be set on the asyncio future
        of `asyncio.to_thread` (the await would never end)."""
        try:
            self._run(kind, payload)
        except StopIteration as error:
            raise RuntimeError(f"{kind} ended early (StopIteration)") from error

    def _run(self, kind, payload):
        """Run one queued piece of work (in a thread of the event loop's pool): model work goes to the engine."""
        if kind == "respond":
            self._respond(self.engine.call(self._conversation).result(), *payload)
        else:
            self.engine.call(self._apply, kind, payload).result()

    def _conversation(self) -> OmniConversation:
        if self.conversation is None:
            self.conversation = OmniConversation(self.model, self.processor, system=self.settings.instructions)
        return self.conversation

    def _apply(self, kind, payload):
        """Apply input to the conversation (on the engine's thread)."""
        if kind == "free":
            self.conversation.close()
            return
        conversation = self._conversation()
        if kind == "begin":
            conversation.begin_audio()
        elif kind == "audio":
            conversation.append_audio(payload)
        elif kind == "commit":
            conversation.end_audio()
        elif kind == "clear":
            conversation.cancel_audio()
        elif kind == "item":
            self._add_item(conversation, payload)

    def _add_item(self, conversation, parts):
        """Images and text make one typed message; audio (with the text after it) a spoken one."""
        texts = "".join(p for k, p in parts if k == "text")
        images = [p for k, p in parts if k == "image"]
        audios = [p for k, p in parts if k == "audio"]
        if images or not audios:
            conversation.add_text(texts, images=images)
            texts = ""
        if audios:
            resampler = StreamingResampler(RATE, self.processor.feature_extractor.sampling_rate)
            conversation.begin_audio()
            for audio in audios:
                conversation.append_audio(resampler.push(audio))
            conversation.end_audio(text=texts)

    def _respond(self, conversation, response: ActiveResponse, audio: bool, voice: str, limit: int | None):
        emit = self._emit_threadsafe
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        kwargs = dict(self.generation_kwargs)
        if limit is not None:
            kwargs["thinker_max_new_tokens"] = limit
        status, transcript, usage = "completed", [], {}
        if response.cancel.is_set():
            status = "cancelled"
        else:
            emit(self._event("response.output_item.added", response_id=response.id, output_index=0,
                             item=self._item(response.item_id, "assistant", [], "in_progress")))  # fmt: skip
            part = {"type": "output_audio" if audio else "output_text", "transcript" if audio else "text": ""}
            emit(self._event("response.content_part.added", part=part, **self._where(response)))
            events = self.engine.stream(
                lambda: conversation.stream(speaker=voice, return_audio=audio, generator=generator, **kwargs),
                stop_when=response.cancel,
                seed=self.seed,
            )
            try:
                for event in events:
                    if response.cancel.is_set():
                        status = "cancelled"
                        break
                    if isinstance(event, TextDelta) and event.text:
                        transcript.append(event.text)
                        kind = "response.output_audio_transcript.delta" if audio else "response.output_text.delta"
                        emit(self._event(kind, delta=event.text, **self._where(response)))
                    elif isinstance(event, AudioChunk):
                        emit(self._event("response.output_audio.delta", delta=audio_b64(event.audio),
                                         **self._where(response)))  # fmt: skip
                    elif isinstance(event, StreamStats):
                        usage = {"output_tokens": event.text_tokens, "speech_codes": event.speech_codes,
                                 "time_to_first_text": event.time_to_first_text,
                                 "time_to_first_audio": event.time_to_first_audio}  # fmt: skip
                if response.cancel.is_set():  # cancelled while the engine was ending the reply
                    status = "cancelled"
            finally:
                events.close()  # closed on the engine: the reply so far stays in the conversation
            text = "".join(transcript)
            if status == "completed":
                if audio:
                    emit(self._event("response.output_audio.done", **self._where(response)))
                    emit(
                        self._event("response.output_audio_transcript.done", transcript=text, **self._where(response))
                    )
                else:
                    emit(self._event("response.output_text.done", text=text, **self._where(response)))
            content = [{"type": part["type"], "transcript" if audio else "text": text}]
            emit(self._event("response.output_item.done", response_id=response.id, output_index=0,
                             item=self._item(response.item_id, "assistant", content, status)))  # fmt: skip
        if self.response is response:
            self.response = None  # before response.done: the client may create the next one at once
        done = self._response(response, status, usage)
        if status == "cancelled":
            done["status_details"] = {"type": "cancelled", "reason": response.reason}
        emit(self._event("response.done", response=done))

    # ---------------------------------------------------------------- events out
    def _emit_threadsafe(self, event: dict):
        """Send `event` from a worker thread, in order; gives up (RuntimeError) once the event loop has stopped, so a
        reply's thread never waits forever on a server that is shutting down."""
        if self.loop.is_closed():
            raise RuntimeError("The server is shutting down")
        future = asyncio.run_coroutine_threadsafe(self.send(event), self.loop)
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                if self.loop.is_closed() or not self.loop.is_running():
                    future.cancel()
                    raise RuntimeError("The server is shutting down") from None

    def _event(self, kind: str, **fields) -> dict:
        if self.beta:
            kind = BETA_NAMES.get(kind, kind)
        return {"type": kind, "event_id": new_id("event"), **fields}

    def _where(self, response):
        return {"response_id": response.id, "item_id": response.item_id, "output_index": 0, "content_index": 0}

    def _item(self, item_id, role, content, status="completed"):
        return {"id": item_id, "object": "realtime.item", "type": "message", "role": role, "status": status,
                "content": content}  # fmt: skip

    def _response(self, response, status, usage=None):
        return {"id": response.id, "object": "realtime.response", "status": status, "output": [],
                "usage": usage or None}  # fmt: skip

    def _session(self) -> dict:
        return self.settings.as_dict(self.id, self.model_name, self.beta)

    # ---------------------------------------------------------------- end
    async def close(self):
        """Stop any reply, let queued work finish, free the conversation (its cache and track)."""
        if self.closed:
            return
        self.closed = True
        if self.response is not None:
            self.response.stop("client_disconnected")
        while not self.jobs.empty():  # queued input of a vanished client is not worth prefilling
            kind, payload = self.jobs.get_nowait()
            if kind == "respond":
                payload[0].finished.set()
        self.jobs.put_nowait(("close", None))
        with contextlib.suppress(asyncio.CancelledError):
            await self.worker
        if self.conversation is not None:
            await asyncio.to_thread(self._run, "free", None)
        self.conversation = None


def _client_error(error: Exception) -> Exception:
    """What a client is told about a failed piece of work: our own checks (ValueError, EventError) as they are,
    anything else as a generic message without internal text (the log has the details)."""
    if isinstance(error, ValueError):
        return error
    if isinstance(error, ServerBusy):  # every reply slot is taken: the client may retry
        return EventError(f"{error}; retry later", code="server_busy")
    return RuntimeError("The model could not process this turn (see the server log)")


def _max_tokens(value, event) -> int | None:
    """`max_output_tokens`: a positive integer, "inf" or absent (the server's default)."""
    if value is None or value == "inf":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise EventError(f"max_output_tokens must be a positive integer or 'inf', got {value!r}",
                         param="response.max_output_tokens", event_id=event.get("event_id"))  # fmt: skip
    return value


__all__ = ["ActiveResponse", "RealtimeSession"]
