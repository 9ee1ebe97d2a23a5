"""One `/v1/realtime` response streamed as the protocol's events, in the order LiveKit Agents and Pipecat expect.

For a message: `response.output_item.added`, `conversation.item.added` (GA), `response.content_part.added`
(part type `audio` with a transcript, or `text`), the deltas (`output_audio_buffer.started` before the first audio),
`response.output_audio.done` + `response.output_audio_transcript.done` (or `response.output_text.done`),
`response.content_part.done`, `response.output_item.done`, `conversation.item.done` (GA),
`output_audio_buffer.stopped`; then for each function call the model wrote (`<tool_call>` blocks, see
`omni_hf.serving.tools`): `response.output_item.added`, `conversation.item.added`,
`response.function_call_arguments.delta` / `.done`, `response.output_item.done`, `conversation.item.done`; last
`response.done` with the output items, `status_details` and `usage`, then `rate_limits.updated` (the response's
token budget and what is left of it).

The message item is opened at the reply's first shown text or audio, so that a reply that is only a function call
has no empty message. Once a `<tool_call>` block starts, the reply's audio is no longer sent (its speech would read
the call out).
"""

import time
from dataclasses import dataclass

import torch

from ..omni.events import AudioChunk, StreamStats, TextDelta
from .realtime_events import RATE, audio_b64, new_id
from .realtime_items import ItemLog, Source, function_call_item, message_item
from .tools import ToolCallParser, render_tool_call


@dataclass
class ResponsePlan:
    """What one `response.create` asks for (checked on the event loop)."""

    response: object = None  # the session's ActiveResponse
    audio: bool = True
    voice: str = "Chelsie"
    limit: int | None = None  # Thinker tokens
    system: str = ""
    tools: list | None = None
    tool_choice: object = "auto"
    conversation: str = "auto"  # "none": out of band, not added to the conversation
    input: ItemLog | None = None  # items in place of the conversation's
    side: bool = False  # generated on a conversation of its own (replayed)


class ResponseWriter:
    """Streams one response of `session` (a `RealtimeSession`) from the engine (runs in a worker thread)."""

    def __init__(self, session, engine, generation_kwargs: dict, seed, limits: dict):
        self.session, self.engine, self.seed, self.limits = session, engine, seed, limits
        self.generation_kwargs = dict(generation_kwargs)
        self.emit = session._emit_threadsafe

    def _where(self, item_id, output_index):
        return {"response_id": self.response.id, "item_id": item_id, "output_index": output_index,
                "content_index": 0}  # fmt: skip

    def _event(self, kind, **fields):
        return self.session._event(kind, **fields)

    def _added(self, item, previous):
        """The item joins the conversation (GA: `conversation.item.added`; beta: `conversation.item.created`)."""
        if self.plan.conversation == "none":
            return
        kind = "conversation.item.created" if self.session.beta else "conversation.item.added"
        self.emit(self._event(kind, previous_item_id=previous, item=item))

    def _log(self, item, source):
        if self.plan.conversation == "none":
            return None
        previous, _ = self.session.log.insert(item, source)
        source.applied = True
        return previous

    def open_message(self):
        if self.message is not None:
            return
        plan = self.plan
        item = message_item(self.response.item_id, "assistant", [], "in_progress")
        self.message = item
        self.message_source = Source("assistant")
        self.output.append(item)
        previous = self._log(item, self.message_source)
        self.emit(self._event("response.output_item.added", response_id=self.response.id, output_index=0, item=item))
        self._added(item, previous)
        part = {"type": "audio", "transcript": ""} if plan.audio else {"type": "text", "text": ""}
        self.emit(self._event("response.content_part.added", part=part, **self._where(item["id"], 0)))

    def respond(self, conversation, plan: ResponsePlan) -> None:
        self.plan, self.response = plan, plan.response
        response, session = self.response, self.session
        self.message, self.output, transcript, calls = None, [], [], []
        status, usage, stats, audio_started, audio_samples = "completed", None, None, False, 0
        kwargs = dict(self.generation_kwargs)
        if plan.limit is not None:
            kwargs["thinker_max_new_tokens"] = plan.limit
        if self.limits.get("max_tokens") is not None:  # serve's --max-tokens caps the default too
            kwargs["thinker_max_new_tokens"] = min(
                kwargs.get("thinker_max_new_tokens", 1024), self.limits["max_tokens"]
            )
        if self.limits.get("talker_max_new_tokens") is not None:
            kwargs["talker_max_new_tokens"] = min(
                kwargs.get("talker_max_new_tokens", self.limits["talker_max_new_tokens"]),
                self.limits["talker_max_new_tokens"],
            )
        timeout = self.limits.get("timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        parser = ToolCallParser() if plan.tools and plan.tool_choice != "none" else None
        prompt = conversation.input_ids[0].tolist() + list(conversation.pending)
        cached = conversation.input_ids.shape[1]
        if response.cancel.is_set():
            status = "cancelled"
        else:
            events = self.engine.stream(
                lambda: conversation.stream(
                    speaker=plan.voice, return_audio=plan.audio, generator=generator, **kwargs
                ),
                stop_when=response.cancel,
                seed=self.seed,
            )
            try:
                for event in events:
                    if deadline is not None and time.monotonic() > deadline:
                        response.stop("timeout")
                    if response.cancel.is_set():
                        status = "cancelled"
                        break
                    if isinstance(event, TextDelta) and event.text:
                        shown = event.text if parser is None else parser.feed(event.text)
                        if shown:
                            self._text(shown, transcript)
                    elif isinstance(event, AudioChunk) and not (parser and (parser.in_call or parser.calls)):
                        self.open_message()
                        if not audio_started:
                            audio_started = True
                            self.emit(self._event("output_audio_buffer.started", response_id=response.id))
                        audio_samples += event.audio.size
                        self.emit(self._event("response.output_audio.delta", delta=audio_b64(event.audio),
                                              **self._where(response.item_id, 0)))  # fmt: skip
                    elif isinstance(event, StreamStats):
                        stats = event
                if response.cancel.is_set():  # cancelled while the engine was ending the reply
                    status = "cancelled"
            finally:
                events.close()  # closed on the engine: the reply so far stays in the conversation
            if parser is not None:
                rest = parser.finish()
                if rest and status == "completed":
                    self._text(rest, transcript)
                calls = parser.calls
            self._close_message("".join(transcript), status, audio_samples)
            if audio_started:
                self.emit(self._event("output_audio_buffer.stopped", response_id=response.id))
            if status == "completed":
                for call in calls:
                    self._function_call(call)
        usage = self._usage(prompt, cached, stats, conversation)
        if session.response is response:
            session.response = None  # before response.done: the client may create the next one at once
        done = session._response(response, status, usage, self.output, plan)
        if status == "cancelled":
            done["status_details"] = {"type": "cancelled", "reason": response.reason}
        self.emit(self._event("response.done", response=done))
        budget = kwargs.get("thinker_max_new_tokens")
        if budget is not None:  # the per-response token budget (no account-level limits on a local server)
            used = stats.text_tokens if stats else 0
            self.emit(self._event("rate_limits.updated", rate_limits=[
                {"name": "tokens", "limit": budget, "remaining": max(budget - used, 0), "reset_seconds": 0}]))  # fmt: skip

    def _text(self, text, transcript):
        self.open_message()
        transcript.append(text)
        kind = "response.output_audio_transcript.delta" if self.plan.audio else "response.output_text.delta"
        self.emit(self._event(kind, delta=text, **self._where(self.response.item_id, 0)))

    def _close_message(self, text, status, audio_samples):
        if self.message is None:
            return
        where = self._where(self.response.item_id, 0)
        if status == "completed":
            if self.plan.audio:
                self.emit(self._event("response.output_audio.done", **where))
                self.emit(self._event("response.output_audio_transcript.done", transcript=text, **where))
            else:
                self.emit(self._event("response.output_text.done", text=text, **where))
        part = {"type": "audio", "transcript": text} if self.plan.audio else {"type": "text", "text": text}
        self.emit(self._event("response.content_part.done", part=part, **where))
        self.message["content"] = [part]
        self.message["status"] = "completed" if status == "completed" else "incomplete"
        self.message_source.text = text
        self.session.audio_ms[self.message["id"]] = audio_samples * 1000 // RATE
        self.emit(self._event("response.output_item.done", response_id=self.response.id, output_index=0,
                              item=self.message))  # fmt: skip
        if self.plan.conversation != "none" and not self.session.beta:
            self.emit(self._event("conversation.item.done", item=self.message))

    def _function_call(self, call):
        index = len(self.output)
        item = function_call_item(new_id("item"), call["id"], call["name"], "", "in_progress")
        self.output.append(item)
        source = Source("assistant", render_tool_call(call["name"], call["arguments"]))
        previous = self._log(item, source)
        self.emit(self._event("response.output_item.added", response_id=self.response.id, output_index=index,
                              item=dict(item)))  # fmt: skip
        self._added(dict(item), previous)
        where = {"response_id": self.response.id, "item_id": item["id"], "output_index": index,
                 "call_id": call["id"]}  # fmt: skip
        self.emit(self._event("response.function_call_arguments.delta", delta=call["arguments"], **where))
        self.emit(self._event("response.function_call_arguments.done", name=call["name"],
                              arguments=call["arguments"], **where))  # fmt: skip
        item["arguments"], item["status"] = call["arguments"], "completed"
        self.emit(self._event("response.output_item.done", response_id=self.response.id, output_index=index,
                              item=item))  # fmt: skip
        if self.plan.conversation != "none" and not self.session.beta:
            self.emit(self._event("conversation.item.done", item=item))

    def _usage(self, prompt, cached, stats, conversation):
        """OpenAI's usage fields (input split into text / audio / image tokens of the prompt; output text tokens and
        speech codes), plus `speech_codes` and the first-text / first-audio times."""
        config = conversation.thinker.config
        audio_in = sum(1 for t in prompt if t == config.audio_token_id)
        image_in = sum(1 for t in prompt if t in (config.image_token_id, config.video_token_id))
        output = stats.text_tokens if stats else 0
        codes = stats.speech_codes if stats else 0
        return {
            "total_tokens": len(prompt) + output + codes,
            "input_tokens": len(prompt),
            "output_tokens": output + codes,
            "input_token_details": {
                "text_tokens": len(prompt) - audio_in - image_in,
                "audio_tokens": audio_in,
                "image_tokens": image_in,
                "cached_tokens": cached,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },  # fmt: skip
            "output_token_details": {"text_tokens": output, "audio_tokens": codes},
            "speech_codes": codes,
            "time_to_first_text": stats.time_to_first_text if stats else None,
            "time_to_first_audio": stats.time_to_first_audio if stats else None,
        }


__all__ = ["ResponsePlan", "ResponseWriter"]
