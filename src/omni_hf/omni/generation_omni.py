"""The streaming reply loop: Thinker, Talker and token2wav advance together in one thread.

Order of work (batch of one): a Thinker step yields a text token and records the entry (final hidden state +
input embedding) of the token it consumed; the Talker then takes every step whose Thinker entry exists (its step
`t` needs the entry of reply token `t`; once the Thinker has finished, the tts-eos entry and then tts-pad entries
follow, exactly as `build_talker_inputs` lays them out offline); each new code goes to the streaming token2wav, which
returns audio as soon as a chunk's look-ahead codes exist. Being a plain generator, the loop stops the moment its
consumer stops iterating (nothing keeps running), and an exception inside any model surfaces at the `for` loop.
"""

import contextlib
import time
from collections.abc import Iterator

import torch

from ..talker.talker_inputs import talker_prompt, text_entry
from ..token2wav.streaming import StreamingWindow, Token2WavStream
from .decoding import StepDecoder
from .events import AudioChunk, StreamStats, TextDelta
from .worker import BackgroundToken2Wav, InlineToken2Wav


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


class _Clock:
    """Wall-clock stage timer (synchronises CUDA so a stage's kernels are charged to it)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.start = time.perf_counter()
        self.seconds = {"thinker": 0.0, "talker": 0.0, "dit": 0.0, "vocoder": 0.0}

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def since_start(self) -> float:
        return time.perf_counter() - self.start


class _TimedToken2Wav(Token2WavStream):
    """Token2WavStream that charges its DiT and vocoder time to a clock, and runs each DiT chunk inside
    `dit_context()` (e.g. a voice's DiT adapter)."""

    def __init__(self, clock: _Clock, *args, dit_context=contextlib.nullcontext, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.dit_context = dit_context
        vocoder_push = self.vocoder.push

        def timed_push(*a, **k):
            begin = clock.now()
            try:
                return vocoder_push(*a, **k)
            finally:
                clock.seconds["vocoder"] += clock.now() - begin

        self.vocoder.push = timed_push

    def _decode_chunk(self, first_block, size):
        begin = self.clock.now()
        try:
            with self.dit_context():
                return super()._decode_chunk(first_block, size)
        finally:
            self.clock.seconds["dit"] += self.clock.now() - begin


def stream_reply(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    thinker_inputs: dict,
    thinker_kwargs: dict,
    voice=None,
    talker_kwargs: dict | None = None,
    token2wav_kwargs: dict | None = None,
    media_layout: dict | None = None,
    tokenizer=None,
    window: StreamingWindow | None = None,
    generator: torch.Generator | None = None,
    prompt_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
    background_token2wav: bool = False,
    talker_context=contextlib.nullcontext,
    dit_context=contextlib.nullcontext,
) -> Iterator[TextDelta | AudioChunk | StreamStats]:
    """Yield `TextDelta`s and, with a `voice`, `AudioChunk`s as they are produced, then one `StreamStats`.

    `thinker_inputs` are the prompt's extra Thinker inputs (media, or a prefilled `cache`); `media_layout` the
    media layout the Talker needs for TMRoPE ids. `prompt_prefix` is the Thinker track `(inputs_embeds,
    last_hidden_state)` of prompt positions already in a prefilled cache (chunked prefill). See
    `OmniForConditionalGeneration.stream` for the public API. With `background_token2wav`, the DiT and vocoder
    run on a worker thread (joined before this generator returns or is closed). `talker_context()` is entered
    around every Talker forward (e.g. to select a voice adapter), `dit_context()` around every DiT chunk, so nothing
    stays switched while the stream waits.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"stream() takes one prompt: input_ids of shape (1, length), got {tuple(input_ids.shape)}")
    if input_ids.shape[1] == 0:
        raise ValueError("stream() got an empty prompt (input_ids has no tokens)")
    clock = _Clock(model.thinker.device)
    stats = StreamStats()
    text = IncrementalText(tokenizer)
    speak = voice is not None
    thinker = talker = speech = None
    entries: list[torch.Tensor] = []  # entry of reply token k at index k
    prompt_track = None
    audio_samples = 0
    with model._thinker_track() as track:
        try:
            begin = clock.now()
            thinker = StepDecoder.start(
                model.thinker, input_ids=input_ids, attention_mask=attention_mask, **thinker_inputs, **thinker_kwargs
            )
            clock.seconds["thinker"] += clock.now() - begin
            eos = pad = None
            while True:
                if not thinker.finished:  # ---- one Thinker step
                    begin = clock.now()
                    token = thinker.step()
                    clock.seconds["thinker"] += clock.now() - begin
                    embeds, hidden = track.pop()
                    if thinker.steps == 1:
                        prompt_track = (embeds, hidden)
                        if prompt_prefix is not None:
                            prompt_track = tuple(torch.cat(pair, dim=1) for pair in zip(prompt_prefix, prompt_track))
                    elif speak:
                        entries.append(hidden + embeds)
                    track.clear()
                    stats.text_tokens += 1
                    if stats.time_to_first_text is None:
                        stats.time_to_first_text = clock.since_start()
                    ids = token.tolist()
                    stats.token_ids += ids
                    yield TextDelta(text=text.push(ids), token_ids=ids)
                if not speak:
                    if thinker.finished:
                        break
                    continue
                if talker is None:  # ---- the Talker starts once the first reply entry exists
                    if not entries:
                        if thinker.finished:
                            break  # a reply of fewer than 2 tokens is not spoken (as in `generate`)
                        continue
                    begin = clock.now()
                    inputs = talker_prompt(
                        model.thinker,
                        model.talker.config,
                        input_ids,
                        prompt_track,
                        entries[0],
                        thinker.generated[:, :1],
                        voice.bos_token_id,
                        attention_mask,
                    )
                    talker = StepDecoder.start(
                        model.talker, **inputs, thinker_reply_part=entries[0], **media_layout, **talker_kwargs
                    )
                    clock.seconds["talker"] += clock.now() - begin
                    decoder = _TimedToken2Wav(
                        clock,
                        model.token2wav,
                        voice.ref_mel,
                        voice.cond,
                        window,
                        generator=generator,
                        dit_context=dit_context,
                        **token2wav_kwargs,
                    )
                    speech = (BackgroundToken2Wav if background_token2wav else InlineToken2Wav)(decoder)
                    eos = text_entry(model.thinker, model.talker.config.tts_text_end_token_id, 1)
                    pad = text_entry(model.thinker, model.talker.config.tts_text_pad_token_id, 1)
                # ---- every Talker step whose Thinker entry exists
                while not talker.finished:
                    t = talker.steps
                    if t > 0:
                        if t < len(entries):
                            entry = entries[t]
                        elif not thinker.finished:
                            break  # wait for the Thinker
                        else:
                            entry = eos if t == len(entries) else pad
                        talker.model_kwargs["thinker_reply_part"] = entry
                        if t - 1 < len(entries):
                            entries[t - 1] = None  # consumed: free it
                    begin = clock.now()
                    with talker_context():
                        code = talker.step()
                    clock.seconds["talker"] += clock.now() - begin
                    is_end = talker.finished and bool(torch.isin(code, _ends(model)).item())
                    if not is_end:
                        speech.push(code)
                        stats.speech_codes += 1
                        stats.speech_code_ids.append(int(code))
                    for chunk in speech.finish() if talker.finished else speech.poll():
                        if stats.time_to_first_audio is None:
                            stats.time_to_first_audio = clock.since_start()
                        yield AudioChunk(chunk.cpu().numpy(), start=audio_samples / 24000)
                        audio_samples += chunk.numel()
                if talker.finished and thinker.finished:
                    break
        finally:
            for part in (speech, thinker, talker):
                if part is not None:
                    part.close()
            entries.clear()
    stats.wall_seconds = clock.since_start()
    stats.audio_seconds = audio_samples / 24000
    stats.stage_seconds = dict(clock.seconds)
    if stats.audio_seconds > 0:
        stats.rtf = {k: v / stats.audio_seconds for k, v in clock.seconds.items()}
        stats.rtf["total"] = stats.wall_seconds / stats.audio_seconds
    yield stats


def _ends(model) -> torch.Tensor:
    return torch.tensor(model.talker.config.codec_eos_token_ids, device=model.talker.device)


__all__ = ["IncrementalText", "stream_reply"]
