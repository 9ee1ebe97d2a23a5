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

from ..omni.conversation import OmniConversation
from .realtime_compat import OPENAI_VOICES, normalize_session, transcription_settings
from .realtime_events import (
    BETA_NAMES,
    RATE,
    EventError,
    SessionSettings,
    error_event,
    new_id,
    parse_client_event,
    update_settings,
)
from .realtime_items import ItemLog, Source, add_source, message_item, parse_item, replay
from .realtime_response import ResponsePlan, ResponseWriter
from .scheduler import ServerBusy
from .tools import check_tool_choice, check_tools, tools_system_prompt
from .vad import StreamingResampler, make_vad

logger = logging.getLogger(__name__)


class ActiveResponse:
    """One response being generated: its ids, and the flag that stops it (`reason`: why)."""

    def __init__(self, metadata=None, conversation: str = "auto"):
        self.id, self.item_id = new_id("resp"), new_id("item")
        self.metadata, self.conversation = metadata, conversation
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
                 generation_kwargs: dict | None = None, seed: int | None = 0, limits: dict | None = None):  # fmt: skip
        self.model, self.processor, self.send, self.engine = model, processor, send, engine
        self.limits = dict(limits or {})  # the server's: max_tokens, talker_max_new_tokens, timeout
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
        self.last_response: ActiveResponse | None = None  # the latest one, until its response.done is sent
        self.log = ItemLog()  # the conversation's items, as the protocol shows them
        self.dirty = False  # the items changed other than at the end: the conversation is replayed before use
        self.tools: list[dict] = []
        self.tool_choice = "auto"
        self.transcription: dict | None = None
        self.audio_ms: dict[str, int] = {}  # ms of audio sent for each assistant item (conversation.item.truncate)
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
        raw = event.get("session")
        payload, notes = normalize_session(raw, speakers, self.settings.voice)
        tools, tool_choice = self.tools, self.tool_choice
        if isinstance(raw, dict) and "tools" in raw:
            try:
                tools = check_tools(raw["tools"], "session.tools")
            except ValueError as error:
                raise EventError(str(error), param="session.tools", event_id=event.get("event_id")) from None
        if isinstance(raw, dict) and "tool_choice" in raw:
            try:
                tool_choice = check_tool_choice(raw["tool_choice"], tools, "session.tool_choice")
            except ValueError as error:
                raise EventError(str(error), param="session.tool_choice", event_id=event.get("event_id")) from None
        given, transcription = transcription_settings(raw)
        if given and transcription is not None and not isinstance(transcription, dict):
            raise EventError("input_audio_transcription must be an object or null",
                             param="session.audio.input.transcription", event_id=event.get("event_id"))  # fmt: skip
        new = update_settings(self.settings, payload, speakers, event.get("event_id"))
        if new.audio_output and not self.model.has_talker:
            raise EventError("This model has no talker: only text output", param="session.output_modalities")
        for param, message in notes:  # refused fields: the rest applies
            await self.send(error_event(EventError(message, code="invalid_event", param=param,
                                                   event_id=event.get("event_id"))))  # fmt: skip
        if self._system(new.instructions, tools, tool_choice) != self._system():
            self.dirty = self.dirty or self.conversation is not None  # replayed under the new system prompt
        if given:
            self.transcription = transcription
        self.tools, self.tool_choice = tools, tool_choice
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
        sampling_rate = self.processor.feature_extractor.sampling_rate
        item, source = parse_item(event, lambda samples: StreamingResampler(RATE, sampling_rate).push(samples))
        if self.capturing:
            raise EventError(
                "Commit or clear the input audio buffer before adding an item", event_id=event.get("event_id")
            )
        if self.log.get(item["id"]) is not None:
            raise EventError(f"Item {item['id']!r} already exists", code="item_create_duplicate_item_id",
                             param="item.id", event_id=event.get("event_id"))  # fmt: skip
        try:
            previous, at_end = self.log.insert(item, source, event.get("previous_item_id"))
        except EventError as error:
            error.event_id = event.get("event_id")
            raise
        if at_end:
            self.jobs.put_nowait(("item", source))
        else:
            self.dirty = True
        await self._announce_item(item, previous)

    async def _announce_item(self, item, previous):
        """`conversation.item.created` (beta, and GA for older clients) or `.added` + `.done` (GA)."""
        if self.beta:
            await self.send(self._event("conversation.item.created", previous_item_id=previous, item=item))
            return
        await self.send(self._event("conversation.item.added", previous_item_id=previous, item=item))
        await self.send(self._event("conversation.item.done", previous_item_id=previous, item=item))
        await self.send(self._event("conversation.item.created", previous_item_id=previous, item=item))

    async def _after_response(self):
        """Wait until the latest response has sent its `response.done` (a cancelled one ends within a step)."""
        last = self.last_response
        if last is not None and not last.finished.is_set():
            await last.finished.wait()

    async def _on_conversation_item_delete(self, event):
        await self._after_response()
        item_id = event.get("item_id")
        try:
            self.log.delete(item_id)
        except EventError as error:
            error.event_id = event.get("event_id")
            raise
        self.dirty = True
        await self.send(self._event("conversation.item.deleted", item_id=item_id))

    async def _on_conversation_item_retrieve(self, event):
        await self._after_response()
        item = self.log.get(event.get("item_id"))
        if item is None:
            raise EventError(f"Item {event.get('item_id')!r} does not exist in this conversation",
                             code="item_retrieve_invalid_item_id", param="item_id", event_id=event.get("event_id"))  # fmt: skip
        await self.send(self._event("conversation.item.retrieved", item=item))

    async def _on_conversation_item_truncate(self, event):
        """Cut an assistant audio item at `audio_end_ms` (what the user heard): its transcript keeps the same share
        of its characters (at a word end), and the conversation is replayed with it."""
        await self._after_response()
        event_id, item_id = event.get("event_id"), event.get("item_id")
        item = self.log.get(item_id)
        if item is None or item.get("role") != "assistant":
            raise EventError(f"Item {item_id!r} is not an assistant message of this conversation",
                             code="item_truncate_invalid_item_id", param="item_id", event_id=event_id)  # fmt: skip
        end_ms = event.get("audio_end_ms")
        total_ms = self.audio_ms.get(item_id, 0)
        if not isinstance(end_ms, int) or isinstance(end_ms, bool) or end_ms < 0:
            raise EventError("audio_end_ms must be a non-negative integer", param="audio_end_ms", event_id=event_id)
        if end_ms > total_ms:
            raise EventError(f"audio_end_ms ({end_ms}) is longer than the item's audio ({total_ms} ms)",
                             code="invalid_value", param="audio_end_ms", event_id=event_id)  # fmt: skip
        source = self.log.sources[item_id]
        if end_ms < total_ms:
            keep = len(source.text) * end_ms // max(total_ms, 1)
            cut = source.text[:keep]
            if keep < len(source.text) and " " in cut:
                cut = cut[: cut.rindex(" ")]
            if cut != source.text:
                source.text = cut
                for part in item.get("content", []):
                    if "transcript" in part:
                        part["transcript"] = cut
                self.audio_ms[item_id] = end_ms
                self.dirty = True
        await self.send(self._event("conversation.item.truncated", item_id=item_id,
                                    content_index=event.get("content_index", 0), audio_end_ms=end_ms))  # fmt: skip

    async def _on_output_audio_buffer_clear(self, event):
        if self.response is not None:
            self.response.stop("client_cancelled")
        await self.send(
            self._event("output_audio_buffer.cleared", response_id=getattr(self.last_response, "id", None))
        )

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
        if audio and voice not in self.model.speakers and voice in OPENAI_VOICES:
            voice = self.settings.voice  # mapped as in session.update (realtime_compat)
        if audio and voice not in self.model.speakers:
            raise EventError(f"Unknown voice {voice!r}", param="response.voice", event_id=event.get("event_id"))
        limit = _max_tokens(options.get("max_output_tokens", options.get("max_response_output_tokens")), event)
        plan = self._plan(options, event.get("event_id"))
        plan.audio, plan.voice = audio, voice
        plan.limit = self._limit(limit or self.settings.max_output_tokens)
        metadata = options.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise EventError("`response.metadata` must be an object", param="response.metadata",
                             event_id=event.get("event_id"))  # fmt: skip
        await self._after_response()  # the previous response's response.done comes first
        response = ActiveResponse(metadata, plan.conversation)
        self.response = self.last_response = response
        plan.response = response
        await self.send(self._event("response.created", response=self._response(response, "in_progress")))
        self.jobs.put_nowait(("respond", plan))

    def _plan(self, options: dict, event_id) -> ResponsePlan:
        """A response's own options: tools, tool_choice, instructions, `conversation` ("auto" / "none") and
        `input` (items in place of the conversation's)."""
        plan = ResponsePlan()
        plan.tools, plan.tool_choice = self.tools, self.tool_choice
        try:
            if options.get("tools") is not None:
                plan.tools = check_tools(options["tools"], "response.tools")
            if options.get("tool_choice") is not None:
                plan.tool_choice = check_tool_choice(options["tool_choice"], plan.tools, "response.tool_choice")
        except ValueError as error:
            raise EventError(str(error), param="response.tools", event_id=event_id) from None
        instructions = options.get("instructions")  # null (LiveKit sends it unset as null): the session's
        instructions = self.settings.instructions if instructions is None else instructions
        if not isinstance(instructions, str | None):
            raise EventError("`response.instructions` must be a string", param="response.instructions",
                             event_id=event_id)  # fmt: skip
        plan.system = self._system(instructions, plan.tools, plan.tool_choice)
        conversation = options.get("conversation") or "auto"
        if conversation not in ("auto", "none"):
            raise EventError(f"`response.conversation` must be 'auto' or 'none', got {conversation!r}",
                             param="response.conversation", event_id=event_id)  # fmt: skip
        plan.conversation = conversation
        if options.get("input") is not None:
            if not isinstance(options["input"], list):
                raise EventError("`response.input` must be a list of items", param="response.input",
                                 event_id=event_id)  # fmt: skip
            sampling_rate = self.processor.feature_extractor.sampling_rate
            plan.input = ItemLog()
            for i, entry in enumerate(options["input"]):
                if isinstance(entry, dict) and set(entry) <= {"type", "id"} and entry.get("type") == "item_reference":
                    found = self.log.get(entry.get("id"))
                    if found is None:
                        raise EventError(f"response.input[{i}] references an unknown item", param=f"response.input[{i}]",
                                         event_id=event_id)  # fmt: skip
                    plan.input.insert(found, self.log.sources[found["id"]])
                    continue
                item, source = parse_item({"item": entry, "event_id": event_id},
                                          lambda x: StreamingResampler(RATE, sampling_rate).push(x))  # fmt: skip
                plan.input.insert(item, source)
        plan.side = plan.conversation == "none" or plan.input is not None or plan.system != self._system()
        return plan

    def _limit(self, tokens: int | None) -> int | None:
        """A response's own token limit (None: the server's default) under the server's `--max-tokens`."""
        cap = self.limits.get("max_tokens")
        return tokens if tokens is None or cap is None else min(tokens, cap)

    def _system(self, instructions="unset", tools=None, tool_choice=None) -> str:
        """The system prompt: the instructions (default: the processor's) with the tools section."""
        if instructions == "unset":
            instructions, tools, tool_choice = self.settings.instructions, self.tools, self.tool_choice
        base = self.processor.default_system_prompt if instructions is None else instructions
        return tools_system_prompt(base, tools or [], tool_choice)

    async def _on_response_cancel(self, event):
        if self.response is None:
            raise EventError("There is no active response to cancel", code="response_cancel_not_active",
                             event_id=event.get("event_id"))  # fmt: skip
        self.response.stop("client_cancelled")

    # ---------------------------------------------------------------- input state
    def _reset_input(self):
        turn = self.settings.turn_detection
        self.resampler = StreamingResampler(RATE, self.processor.feature_extractor.sampling_rate)
        self.vad = None if turn is None else make_vad(RATE, turn.threshold, turn.silence_duration_ms)
        self.ring = collections.deque()
        self.ring_samples = 0 if turn is None else turn.prefix_padding_ms * 16
        self.capturing, self.captured_ms, self.item_id = False, 0, new_id("item")
        self.clips: list[np.ndarray] = []  # the open spoken message's 16 kHz audio (kept to replay it)

    async def _capture(self, audio: np.ndarray, start_ms: int):
        if not self.capturing:
            self.capturing, self.captured_ms, self.audio_start_ms = True, 0, start_ms
            self.clips = []
            self.jobs.put_nowait(("begin", None))
        self.captured_ms += audio.size * 1000 // self.processor.feature_extractor.sampling_rate
        self.clips.append(audio)
        self.jobs.put_nowait(("audio", audio))

    async def _commit(self, event_id):
        item_id = self.item_id
        item = message_item(item_id, "user", [{"type": "input_audio", "transcript": None}])
        source = Source("user", audio=self.clips, item_id=item_id)
        previous, _ = self.log.insert(item, source)
        self.jobs.put_nowait(("commit", source))
        self.capturing, self.item_id = False, new_id("item")
        self.resampler = StreamingResampler(RATE, self.processor.feature_extractor.sampling_rate)
        await self.send(self._event("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id))
        await self._announce_item(item, previous)
        if self.transcription is not None:
            self.jobs.put_nowait(("transcribe", (item, source)))

    # ---------------------------------------------------------------- model work (worker thread)
    async def _work(self):
        failed_turn = False  # a spoken turn whose start or audio failed: its other pieces are dropped (one error)
        while True:
            kind, payload = await self.jobs.get()
            if kind == "close":
                return
            if kind in ("begin", "clear"):
                failed_turn = False
            elif kind in ("audio", "commit") and failed_turn:
                if kind == "commit":  # the item never reached the conversation: it leaves the items too
                    failed_turn = False
                    with contextlib.suppress(EventError):
                        self.log.delete(payload.item_id)
                continue
            try:
                if kind == "transcribe":
                    await self._transcribe(*payload)
                else:
                    await asyncio.to_thread(self._run_reporting, kind, payload)
            except Exception as error:  # reported to the client; the connection stays usable
                logger.warning("realtime %s failed: %r", kind, error)
                failed_turn = kind in ("begin", "audio")
                shown = _client_error(error)
                await self.send(error_event(shown))
                if kind == "respond":
                    if self.response is payload.response:
                        self.response = None
                    failed = self._response(payload.response, "failed")
                    failed["status_details"] = {"type": "failed", "error": {"message": str(shown)}}
                    await self.send(self._event("response.done", response=failed))
            finally:
                if kind == "respond":
                    payload.response.finished.set()
                    if self.response is payload.response:
                        self.response = None

    async def _transcribe(self, item, source):
        """`conversation.item.input_audio_transcription.delta` / `.completed` (or `.failed`) for a spoken item,
        with the evaluation harness's ASR (`omni_hf.evaluation.asr`)."""
        from .realtime_transcribe import transcribe

        try:
            text = await asyncio.to_thread(transcribe, source.audio, self.processor.feature_extractor.sampling_rate,
                                           self.transcription)  # fmt: skip
        except Exception as error:  # noqa: BLE001 - reported as the protocol's failure event
            logger.warning("realtime transcription failed: %r", error)
            await self.send(self._event("conversation.item.input_audio_transcription.failed", item_id=item["id"],
                                        content_index=0, error={"type": "transcription_error",
                                                                "message": "The audio could not be transcribed"}))  # fmt: skip
            return
        for part in item["content"]:
            part["transcript"] = text
        await self.send(self._event("conversation.item.input_audio_transcription.delta", item_id=item["id"],
                                    content_index=0, delta=text))  # fmt: skip
        await self.send(self._event("conversation.item.input_audio_transcription.completed", item_id=item["id"],
                                    content_index=0, transcript=text,
                                    usage={"type": "duration", "seconds": round(sum(c.size for c in source.audio)
                                                                              / self.processor.feature_extractor.sampling_rate, 3)}))  # fmt: skip

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
            plan = payload
            if plan.side:  # a conversation of its own: the response's system prompt or input, or out of band
                conversation = self.engine.call(self._side_conversation, plan).result()
                try:
                    self._writer().respond(conversation, plan)
                finally:
                    self.engine.call(conversation.close).result()
                if plan.conversation == "auto":
                    self.dirty = True  # its reply joins the items: the main conversation is replayed next time
            else:
                self._writer().respond(self.engine.call(self._conversation).result(), plan)
        else:
            self.engine.call(self._apply, kind, payload).result()

    def _writer(self) -> ResponseWriter:
        return ResponseWriter(self, self.engine, self.generation_kwargs, self.seed, self.limits)

    def _conversation(self) -> OmniConversation:
        """The main conversation, replayed from the items when they changed other than at the end (not while a
        spoken message is open)."""
        if self.conversation is not None and self.dirty and not self.conversation.recording:
            self.conversation.close()
            self.conversation = None
        if self.conversation is None:
            self.conversation = OmniConversation(self.model, self.processor, system=self._system())
            if self.dirty:
                replay(self.conversation, self.log)
                for source in self.log.sources.values():
                    source.applied = True
            self.dirty = False
        return self.conversation

    def _side_conversation(self, plan) -> OmniConversation:
        conversation = OmniConversation(self.model, self.processor, system=plan.system)
        replay(conversation, plan.input if plan.input is not None else self.log)
        return conversation

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
            payload.applied = True
        elif kind == "clear":
            conversation.cancel_audio()
        elif kind == "item" and not getattr(payload, "applied", False):
            add_source(conversation, payload)
            payload.applied = True

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

    def _response(self, response, status, usage=None, output=None, plan=None):
        """The `response` object of `response.created` / `.done`: its metadata (e.g. LiveKit's `client_event_id`)
        echoed, `status_details` and the full `usage` (OpenAI's fields, plus `speech_codes` and timings)."""
        body = {"id": response.id, "object": "realtime.response", "status": status, "status_details": None,
                "output": output or [], "conversation_id": None if response.conversation == "none" else self.id,
                "metadata": response.metadata, "usage": usage}  # fmt: skip
        if plan is not None:
            body["output_modalities"] = ["audio"] if plan.audio else ["text"]
        return body

    def _session(self) -> dict:
        session = self.settings.as_dict(self.id, self.model_name, self.beta)
        tools = [{"type": "function", **t["function"]} for t in self.tools]
        return session | {"tools": tools, "tool_choice": self.tool_choice}

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
                payload.response.finished.set()
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
