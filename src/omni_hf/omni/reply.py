"""One reply's progress, whoever drives it: `ReplyState`.

A streamed reply moves through the same stages whether it runs alone (`stream`, `OmniSession`: `_ReplyLoop` in
`generation_omni.py`, batch of one) or beside others (the server's `BatchScheduler`, batched forwards): the Thinker's
prefill, one Thinker token at a time (its entry recorded for the Talker), the Talker's start once the first entry
exists, one Talker step whenever its entry exists (then the tts-eos entry and tts-pad entries once the Thinker has
finished, as `build_talker_inputs` lays them out offline), each code handed to the code-to-wave stream, and the final
text and statistics. The drivers own only *how* forwards run (one request, or a batch); this state owns *what*
each step means, so no stage logic is written twice.
"""

import contextlib
import time

import torch

from ..talker.talker_inputs import talker_prompt, text_entry
from ..token2wav.code_to_wave import SAMPLING_RATE
from .events import AudioChunk, StreamStats, TextDelta


class IncrementalText:
    """Decode a growing token list into text increments (holds back incomplete multi-byte characters)."""

    def __init__(self, tokenizer=None):
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor is accepted too
        self.ids: list[int] = []
        self.emitted = 0

    def push(self, ids: list[int]) -> str:
        self.ids.extend(ids)
        if self.tokenizer is None:
            return ""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        delta, self.emitted = text[self.emitted :], len(text)
        return delta

    def rest(self) -> str:
        """The text held back so far (an incomplete character at the end of the reply), once."""
        if self.tokenizer is None:
            return ""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        delta, self.emitted = text[self.emitted :], len(text)
        return delta


class StageClock:
    """Wall-clock stage timer (synchronises CUDA so a stage's kernels are charged to it)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.start = time.perf_counter()
        self.seconds = {"thinker": 0.0, "talker": 0.0, "dit": 0.0, "vocoder": 0.0}

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextlib.contextmanager
    def charge(self, stage: str):
        begin = self.now()
        try:
            yield
        finally:
            self.seconds[stage] += self.now() - begin

    def since_start(self) -> float:
        return time.perf_counter() - self.start


class ReplyState:
    """The progress of one reply to `prompt` under `request` (an `OmniRequest`; `prompt` a `ReplyPrompt`).

    Drivers call, in order: `start_thinker(decoder_class)`, then per Thinker token `took_thinker_token(token,
    embeds, hidden)`; `start_talker(decoder_class, ...)` until it returns True; per Talker step `talker_entry_ready()`
    (False: wait for the Thinker) then `took_code(code)`; they decode the code-to-wave stream `speech` and turn its
    chunks into events with `audio_event`; at the end `final_events()`. `close()` frees the decoders.

    Attributes:
        thinker / talker: the decoders (a `StepDecoder`, or the server's `BatchableDecoder`).
        speech: the reply's code-to-wave stream (opened by `start_talker`).
        entries: the Talker entry `(1, 1, hidden)` of reply token `k` at index `k` (freed once consumed).
        stats: the reply's [`StreamStats`]; clock: its [`StageClock`].
    """

    def __init__(self, model, request, prompt, tokenizer=None):
        self.model, self.request, self.prompt = model, request, prompt
        self.clock = StageClock(model.thinker.device)
        self.stats = StreamStats()
        self.text = IncrementalText(tokenizer)
        self.thinker = self.talker = self.speech = None
        self.entries: list[torch.Tensor | None] = []
        self.prompt_track: tuple[torch.Tensor, torch.Tensor] | None = None
        self.audio_samples = 0
        self.eos = self.pad = None

    # ---------------------------------------------------------------- Thinker
    def start_thinker(self, decoder_class) -> None:
        """Create the Thinker's decoder (its first `step()` runs the prefill)."""
        with self.clock.charge("thinker"):
            self.thinker = decoder_class.start(
                self.model.thinker,
                input_ids=self.prompt.input_ids,
                attention_mask=self.prompt.attention_mask,
                **self.prompt.thinker_inputs,
                **self.request.thinker_kwargs,
            )

    def took_thinker_token(self, token: torch.Tensor, embeds: torch.Tensor, hidden: torch.Tensor) -> TextDelta:
        """The Thinker produced `token` `(1,)` from a forward whose input embeddings and final hidden states were
        `embeds` / `hidden` `(1, positions, hidden)`: record the Talker's entry (or, after the prefill, the prompt's
        track) and return the text increment."""
        if self.prompt.record is not None:
            self.prompt.record.append((embeds, hidden))
        if self.thinker.steps == 1:
            self.prompt_track = (embeds, hidden)
            if self.prompt.prefix_track is not None:  # a conversation's earlier turns, already in the cache
                self.prompt_track = tuple(
                    torch.cat(pair, dim=1) for pair in zip(self.prompt.prefix_track, (embeds, hidden))
                )
        elif self.request.speaks:
            self.entries.append(hidden + embeds)
        ids = token.tolist()
        self.stats.text_tokens += 1
        self.stats.token_ids += ids
        if self.stats.time_to_first_text is None:
            self.stats.time_to_first_text = self.clock.since_start()
        return TextDelta(text=self.text.push(ids), token_ids=ids)

    # ---------------------------------------------------------------- Talker
    def start_talker(self, decoder_class, window=None, background: bool = False, stage_context=None) -> bool:
        """Start the Talker (prefill inputs, decoder) and open the code-to-wave stream once the first reply entry
        exists; False while it cannot start yet (or the reply is not spoken)."""
        if not self.request.speaks or self.talker is not None:
            return self.talker is not None
        if not self.entries:
            return False
        model, request = self.model, self.request
        talker_config = model.talker.config
        with self.clock.charge("talker"):
            inputs = talker_prompt(
                model.thinker,
                talker_config,
                self.prompt.input_ids,
                self.prompt_track,
                self.entries[0],
                self.thinker.generated[:, :1],
                request.speaker.bos_token_id,
                self.prompt.attention_mask,
            )
            self.talker = decoder_class.start(
                model.talker,
                **inputs,
                thinker_reply_part=self.entries[0],
                **request.media_layout,
                **request.talker_kwargs,
            )
        self.speech = model.open_speech_stream(
            request, window=window, background=background, stage_context=stage_context
        )
        self.eos = text_entry(model.thinker, talker_config.tts_text_end_token_id, 1)
        self.pad = text_entry(model.thinker, talker_config.tts_text_pad_token_id, 1)
        return True

    def talker_entry_ready(self) -> bool:
        """Whether the Talker's next step can run now: its Thinker entry exists (set as `thinker_reply_part`), or
        the Thinker has finished (then tts-eos, then tts-pad). The first step needs no entry."""
        talker, entries = self.talker, self.entries
        t = talker.steps
        if t == 0:
            return True
        if t < len(entries):
            entry = entries[t]
        elif not self.thinker.finished:
            return False
        else:
            entry = self.eos if t == len(entries) else self.pad
        talker.model_kwargs["thinker_reply_part"] = entry
        if t - 1 < len(entries):
            entries[t - 1] = None  # consumed: free it
        return True

    def took_code(self, code: torch.Tensor) -> None:
        """The Talker produced `code` `(1,)`: hand it to the speech stream (a final end code is not speech)."""
        ends = self.model.talker.config.codec_eos_token_ids
        if not (self.talker.finished and int(code) in ends):
            self.stats.speech_codes += 1
            self.stats.speech_code_ids.append(int(code))
            self.speech.add(code)
        if self.talker.finished:
            self.speech.end()

    def audio_event(self, chunk: torch.Tensor) -> AudioChunk:
        """A final waveform chunk `(samples,)` → its event (with its start time in the reply)."""
        if self.stats.time_to_first_audio is None:
            self.stats.time_to_first_audio = self.clock.since_start()
            self.stats.stage_seconds_to_first_audio = dict(self.clock.seconds)
        event = AudioChunk(chunk.cpu().numpy(), start=self.audio_samples / SAMPLING_RATE)
        self.audio_samples += chunk.numel()
        return event

    # ---------------------------------------------------------------- the end
    @property
    def complete(self) -> bool:
        """The Thinker has finished and so has everything spoken."""
        if not self.thinker.finished:
            return False
        if not self.request.speaks or self.talker is None:
            return True  # text only, or a reply too short to speak (as in `generate`)
        return self.talker.finished and self.speech.done

    def final_events(self) -> list:
        """The text held back for an incomplete character (if any), then the reply's [`StreamStats`]."""
        events = []
        if rest := self.text.rest():
            events.append(TextDelta(text=rest, token_ids=[]))
        stats, clock = self.stats, self.clock
        stats.wall_seconds = clock.since_start()
        stats.audio_seconds = self.audio_samples / SAMPLING_RATE
        stats.stage_seconds = dict(clock.seconds)
        if stats.audio_seconds > 0:
            stats.rtf = {k: v / stats.audio_seconds for k, v in clock.seconds.items()}
            stats.rtf["total"] = stats.wall_seconds / stats.audio_seconds
        return events + [stats]

    def close(self) -> None:
        for part in (self.speech, self.thinker, self.talker):
            if part is not None:
                part.close()
        self.entries.clear()


__all__ = ["IncrementalText", "ReplyState", "StageClock"]
