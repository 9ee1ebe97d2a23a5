"""The batching engine: one worker thread owns the model and advances every active reply together.

Each tick the worker (1) admits new requests and runs their Thinker prefill (one request at a time: prompts and
media differ), (2) takes one Thinker decode step of every active request in one batched forward, (3) starts the
Talker of requests whose first reply entry exists (prefill, per request) and takes one Talker step of every request
whose next Thinker entry exists in one batched forward (voice adapters per row), and ((4) hands each new speech
code to that request's code-to-wave stream; the stage decodes every stream's ready windows together
(`model.token2wav.decode_streams`: DiT and vocoder batched).
Each request's progress is a `ReplyState` (`omni_hf.omni.reply`), the same state `model.stream` advances for one
reply alone; this engine only batches the forwards. So a greedy reply equals `model.stream`'s, text, codes and
audio.

Why our own engine: transformers' continuous batching takes token ids and 1-D positions and returns tokens; the
Thinker needs media embeddings and 3-D TMRoPE positions and must hand its hidden states to the Talker, and the
Talker reads a per-step Thinker entry. Requests stay here until the app reads their events from `Job.events`.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from transformers.utils import logging

from ..omni.events import STEP_TAKEN, enable_step_markers
from ..omni.forward_recording import owned_context, record_thinker_forwards
from ..omni.generation_omni import OmniRequest, ReplyPrompt
from ..omni.reply import ReplyState
from ..talker.modeling_talker import OmniTalkerOutput
from ..thinker.modeling_thinker import OmniThinkerOutput
from ..token2wav.streaming import StreamingWindow
from .batching import BatchableDecoder, batched_step

logger = logging.get_logger(__name__)

SERVING_WINDOW = StreamingWindow(chunk_blocks=(2, 6))  # 0.48 s first chunk, then 1.44 s chunks


class ServerBusy(RuntimeError):
    """Every slot is taken; `retry_after` seconds is a hint for the client."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimeout(RuntimeError):
    """A reply ran past its deadline."""


@dataclass
class ReplyRequest:
    """What to generate. `inputs`: processor outputs for one prompt (`input_ids` `(1, length)`, media tensors).

    `speaker`: a name in `model.speakers` (None: text only); `voice_adapter`: a loaded LoRA voice (`model.voice_adapters`).
    Sampling: `do_sample` False is greedy for both the Thinker and the Talker; `seed` seeds the token2wav noise.
    """

    inputs: dict
    speaker: str | None = None
    voice_adapter: str | None = None
    max_new_tokens: int = 256
    talker_max_new_tokens: int = 2048
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    timeout: float | None = None
    token2wav_kwargs: dict = field(default_factory=dict)


class Job:
    """One request in the engine: its `ReplyState` (built at prefill). Events (`TextDelta`, `AudioChunk`, then
    `StreamStats` or an exception) are handed to `sink` on the worker thread; `cancel()` may be called from any
    thread."""

    def __init__(self, request: ReplyRequest, sink: Callable[[object], None]):
        self.request = request
        self.sink = sink
        self.cancelled = threading.Event()
        self.deadline = None if request.timeout is None else time.monotonic() + request.timeout
        self.state: ReplyState | None = None
        self.done = False

    def cancel(self) -> None:
        self.cancelled.set()

    def close(self) -> None:
        if self.state is not None:
            self.state.close()
        self.done = True


class SteppedReply:
    """A reply that makes its own events (a conversation's turn, `OmniConversation.stream`), run by the engine:
    `start()` is called on the engine's thread and returns the events' iterator, which the engine advances by one
    event (or model step: `StepTaken`) per tick beside the batched replies, in a context of its own (its Thinker
    recording sees only its own forwards). Events go to `sink`, then `SteppedReply.END`; a failure goes to `sink`
    as the exception, then END. `cancel()` (or `stop_when` being set) closes the iterator on the engine's thread at its next tick. The reply
    samples from a random state of its own (torch's global CPU generator is swapped around each of its steps), seeded
    with `seed` (else forked from the caller's), so the replies stepped beside it never change its samples."""

    END = object()

    def __init__(self, start: Callable[[], Iterator], sink: Callable[[object], None], stop_when=None, seed=None):
        self.start, self.sink, self.stop_when = start, sink, stop_when
        self.rng = torch.get_rng_state() if seed is None else torch.Generator().manual_seed(seed).get_state()
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.context = owned_context()
        self.context.run(enable_step_markers)  # it yields between model steps, where the engine interleaves it
        self.events: Iterator | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def stopping(self) -> bool:
        return self.cancelled.is_set() or (self.stop_when is not None and self.stop_when.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the engine has closed the reply (its `finally` blocks have run)."""
        return self.finished.wait(timeout)


@dataclass
class _Call:
    function: Callable
    args: tuple
    future: Future


class BatchScheduler:
    """Serve many replies at once from one model on one worker thread (see the module docstring).

    Every model forward of the server runs on that thread: HTTP replies (`submit`, batched), replies that make their
    own events such as realtime turns (`submit_stream`, stepped beside them) and other model work such as a
    conversation's chunk prefill (`call`). So no lock is needed and no request's state is touched by another's.

    Args:
        model: an `OmniForConditionalGeneration` (eval mode).
        tokenizer: a tokenizer or processor, to decode text increments.
        max_active: slots; `submit` raises `ServerBusy` when they are all taken (no unbounded queue).
        window: the token2wav chunking (default `SERVING_WINDOW`: after the first chunk every window has the same
            length, so replies in flight share DiT and vocoder batches).
        align_codes: a ready DiT window may wait up to this many speech codes for another reply's window of the
            same length (aligning replies once; 0: never wait).
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        max_active: int = 8,
        window: StreamingWindow | None = None,
        align_codes: int = 12,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_active = max_active
        self.window = window or SERVING_WINDOW
        self.align_codes = align_codes
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._admitted = 0
        self._jobs: list[Job] = []
        self._stepped: list[SteppedReply] = []
        self._stop = threading.Event()
        self.ticks = 0
        self.batch_sizes: dict[str, list[int]] = {
            "thinker": [],
            "talker": [],
            "dit": [],
        }  # recent batch sizes, for tests
        self._thread = threading.Thread(target=self._run, name="omni-hf-serve-engine", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- public API (any thread)
    @property
    def active(self) -> int:
        return self._admitted

    def submit(self, request: ReplyRequest, sink: Callable[[object], None]) -> Job:
        """Admit a request or raise `ServerBusy`; its events go to `sink` (called on the worker thread)."""
        self._take_slot()
        job = Job(request, sink)
        self._inbox.put(job)
        return job

    def submit_stream(self, start: Callable[[], Iterator], sink: Callable[[object], None], stop_when=None, seed=None):
        """Admit a reply that makes its own events (see `SteppedReply`) or raise `ServerBusy`; it takes a slot."""
        self._take_slot()
        reply = SteppedReply(start, sink, stop_when, seed)
        self._inbox.put(reply)
        return reply

    def stream(self, start: Callable[[], Iterator], stop_when=None, seed=None) -> Iterator:
        """The events of a reply run by the engine (`submit_stream`), for a caller on another thread. A failure in
        the reply is raised here; leaving early (`close()`, `break`) closes the reply on the engine, and returns only
        once its `finally` blocks have run."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        reply = self.submit_stream(start, events.put, stop_when, seed)
        try:
            while (event := events.get()) is not SteppedReply.END:
                if isinstance(event, BaseException):
                    raise event
                yield event
        finally:
            reply.cancel()  # a no-op once the reply has ended
            reply.wait()

    def call(self, function: Callable, *args) -> Future:
        """Run `function(*args)` on the engine's thread before its next tick; the future holds its result."""
        if not self._thread.is_alive():
            raise RuntimeError("The serving engine has stopped")
        future: Future = Future()
        self._inbox.put(_Call(function, args, future))
        return future

    def _take_slot(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("The serving engine has stopped")
        with self._lock:
            if self._admitted >= self.max_active:
                raise ServerBusy(f"All {self.max_active} slots are busy", retry_after=1)
            self._admitted += 1

    def shutdown(self) -> None:
        self._stop.set()
        self._inbox.put(None)
        self._thread.join(timeout=30)

    # ---------------------------------------------------------------- worker
    def _run(self) -> None:
        owned_context().run(self._serve)  # the engine's own forwards belong to none of the stepped replies

    def _serve(self) -> None:
        with torch.inference_mode():
            while not self._stop.is_set():
                self._admit(block=not self._jobs and not self._stepped)
                if self._jobs:
                    self._tick()
                if self._stepped:
                    self._step_stepped()
            for reply in self._stepped:  # stopping: close what is still running
                reply.cancel()
            self._step_stepped()

    def _admit(self, block: bool) -> None:
        try:
            while True:
                item = self._inbox.get() if block else self._inbox.get_nowait()
                block = False
                if item is None:
                    return
                if isinstance(item, _Call):
                    self._run_call(item)
                elif isinstance(item, SteppedReply):
                    self._start_stepped(item)
                else:
                    self._jobs.append(item)
                    self._guard(item, self._prefill)
        except queue.Empty:
            return

    @staticmethod
    def _run_call(call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.function(*call.args))
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            call.future.set_exception(error)

    # ---------------------------------------------------------------- replies that make their own events
    def _start_stepped(self, reply: SteppedReply) -> None:
        try:
            reply.events = self._as_reply(reply, reply.start)
        except Exception as error:  # noqa: BLE001 - reported to the reply
            self._end_stepped(reply, error)
            return
        self._stepped.append(reply)

    @staticmethod
    def _as_reply(reply: SteppedReply, function, *args):
        """Run `function(*args)` as `reply`: in its context, with its random state."""
        engine_rng = torch.get_rng_state()
        torch.set_rng_state(reply.rng)
        try:
            return reply.context.run(function, *args)
        finally:
            reply.rng = torch.get_rng_state()
            torch.set_rng_state(engine_rng)

    def _step_stepped(self) -> None:
        """Advance each stepped reply by one event (a cancelled one is closed instead)."""
        for reply in list(self._stepped):
            try:
                if reply.stopping():
                    self._as_reply(reply, reply.events.close)
                    self._end_stepped(reply, None)
                    continue
                event = self._as_reply(reply, next, reply.events)
            except StopIteration:
                self._end_stepped(reply, None)
            except Exception as error:  # noqa: BLE001 - reported to the reply, the engine keeps serving
                logger.warning(f"A request failed: {error}")
                self._end_stepped(reply, error)
            else:
                if event is not STEP_TAKEN:
                    reply.sink(event)

    def _end_stepped(self, reply: SteppedReply, error) -> None:
        if reply in self._stepped:
            self._stepped.remove(reply)
        with self._lock:
            self._admitted -= 1
        try:
            if error is not None:
                reply.sink(error)
            reply.sink(SteppedReply.END)
        finally:
            reply.finished.set()

    def _guard(self, job: Job, action, *args) -> None:
        """Run `action(job, ...)`; a failure ends only that job, reported to its sink."""
        try:
            action(job, *args)
        except Exception as error:  # noqa: BLE001 - reported to the request, the engine keeps serving
            logger.warning(f"A request failed: {error}")
            self._end(job, error)

    def _end(self, job: Job, outcome) -> None:
        if job.done:
            return
        job.close()
        with self._lock:
            self._admitted -= 1
        if outcome is not None:
            job.sink(outcome)

    def _tick(self) -> None:
        self.ticks += 1
        now = time.monotonic()
        for job in list(self._jobs):
            if job.cancelled.is_set():
                self._end(job, None)
            elif job.deadline is not None and now > job.deadline:
                self._end(job, RequestTimeout(f"The reply ran past its {job.request.timeout:g} s timeout"))
        self._jobs = [job for job in self._jobs if not job.done]
        thinking = [job for job in self._jobs if not job.state.thinker.finished]
        if thinking:
            self._thinker_step(thinking)
        for job in [job for job in self._jobs if not job.done]:
            self._guard(job, self._start_talker)
        talking = [job for job in self._jobs if not job.done and self._talker_ready(job.state)]
        if talking:
            self._talker_step(talking)
        self._token2wav_step()
        for job in self._jobs:
            if not job.done and job.state.complete:
                *events, stats = job.state.final_events()
                for event in events:
                    job.sink(event)
                self._end(job, stats)
        self._jobs = [job for job in self._jobs if not job.done]

    # ---------------------------------------------------------------- Thinker
    def _omni_request(self, request: ReplyRequest) -> OmniRequest:
        """The conductor's request for this reply (`model.build_request`: speaker, voice adapter, kwargs routed
        to the Thinker / Talker / token2wav, media layout), as `generate`, `stream` and `OmniSession` build it."""
        thinker = {"do_sample": request.do_sample}
        talker = {}
        if request.do_sample:
            thinker |= {k: v for k, v in (("temperature", request.temperature), ("top_p", request.top_p)) if v}
        else:
            talker["do_sample"] = False
        media = {k: v for k, v in request.inputs.items() if k not in ("input_ids", "attention_mask")}
        generator = None
        if request.seed is not None and request.speaker is not None:
            generator = torch.Generator(device=self.model.token2wav.device).manual_seed(request.seed)
        return self.model.build_request(
            speaker=request.speaker or "Chelsie",
            return_audio=request.speaker is not None,
            voice_adapter=request.voice_adapter,
            thinker_max_new_tokens=request.max_new_tokens,
            talker_max_new_tokens=request.talker_max_new_tokens,
            generator=generator,
            stage_kwargs={"thinker": thinker, "talker": talker, "token2wav": dict(request.token2wav_kwargs)},
            **media,
        )

    def _prefill(self, job: Job) -> None:
        inputs = job.request.inputs
        if inputs["input_ids"].dim() != 2 or inputs["input_ids"].shape[0] != 1:
            raise ValueError(f"one prompt per request, got input_ids {tuple(inputs['input_ids'].shape)}")
        prompt = ReplyPrompt(inputs["input_ids"], inputs.get("attention_mask"))
        job.state = state = ReplyState(self.model, self._omni_request(job.request), prompt, self.tokenizer)
        with record_thinker_forwards(self.model.thinker) as track:  # the engine's own forwards only
            state.start_thinker(BatchableDecoder)
            token = state.thinker.step()
        embeds, hidden = track[-1]
        job.sink(state.took_thinker_token(token, embeds, hidden))

    def _thinker_step(self, jobs: list[Job]) -> None:
        try:
            with record_thinker_forwards(self.model.thinker) as track:
                tokens = batched_step(self.model.thinker, [job.state.thinker for job in jobs], OmniThinkerOutput)
            embeds, hidden = track[-1]
        except Exception as error:  # noqa: BLE001
            for job in jobs:
                self._end(job, error)
            return
        self.batch_sizes["thinker"] = (self.batch_sizes["thinker"] + [len(jobs)])[-64:]
        for row, (job, token) in enumerate(zip(jobs, tokens)):
            self._guard(job, self._took_thinker_token, token, embeds[row : row + 1], hidden[row : row + 1])

    @staticmethod
    def _took_thinker_token(job: Job, token, embeds, hidden) -> None:
        job.sink(job.state.took_thinker_token(token, embeds, hidden))

    # ---------------------------------------------------------------- Talker and token2wav
    def _start_talker(self, job: Job) -> None:
        """Start the Talker (prefill + first code) once the first reply entry exists."""
        state = job.state
        if state.talker is not None or not state.start_talker(BatchableDecoder, self.window):
            return
        with self.model.voice_adapters.use(state.request.voice_adapter):
            code = state.talker.step()
        state.took_code(code)

    @staticmethod
    def _talker_ready(state: ReplyState) -> bool:
        return state.talker is not None and not state.talker.finished and state.talker_entry_ready()

    def _talker_step(self, jobs: list[Job]) -> None:
        adapters = [job.request.voice_adapter for job in jobs]
        try:
            with self.model.voice_adapters.use(adapters[0] if len(set(adapters)) == 1 else adapters):
                codes = batched_step(self.model.talker, [job.state.talker for job in jobs], OmniTalkerOutput)
        except Exception as error:  # noqa: BLE001
            for job in jobs:
                self._end(job, error)
            return
        self.batch_sizes["talker"] = (self.batch_sizes["talker"] + [len(jobs)])[-64:]
        for job, code in zip(jobs, codes):
            self._guard(job, self._took_code, code)

    @staticmethod
    def _took_code(job: Job, code) -> None:
        job.state.took_code(code)

    def _token2wav_step(self) -> None:
        """Decode every reply's ready windows together (the code-to-wave stage batches what it can)."""
        jobs = [
            job for job in self._jobs if not job.done and job.state.speech is not None and not job.state.speech.done
        ]
        if not jobs:
            return
        try:
            dit = []
            audio = self.model.token2wav.decode_streams(
                [job.state.speech for job in jobs], dit_batches=dit, max_wait=self.align_codes
            )
        except Exception as error:  # noqa: BLE001
            for job in jobs:
                self._end(job, error)
            return
        self.batch_sizes["dit"] = (self.batch_sizes["dit"] + dit)[-64:]
        for job, chunks in zip(jobs, audio):
            for chunk in chunks:
                job.sink(job.state.audio_event(chunk))


__all__ = ["SERVING_WINDOW", "BatchScheduler", "Job", "ReplyRequest", "RequestTimeout", "ServerBusy", "SteppedReply"]
