"""The conductor: every reply (`generate`, `stream`, `OmniSession`, the server) is one `OmniRequest` run by one loop.

`OmniGenerationMixin` is mixed into `OmniForConditionalGeneration`, as transformers' CSM keeps its decoding in
`generation_csm.py` beside the model. A call builds its request once (`build_request`): the speaker, the LoRA voice
adapter, the generation kwargs routed to the Thinker / Talker / token2wav by prefix, and the prompt's media layout.

- `generate` runs the Thinker over the whole reply, then the Talker, then token2wav (batches of prompts).
- `stream` / `stream_reply` run them interleaved in one thread (batch of one): a Thinker step yields a text token and
  records the entry (final hidden state + input embedding) of the token it consumed; the Talker then takes every step
  whose Thinker entry exists (its step `t` needs the entry of reply token `t`; once the Thinker has finished, the
  tts-eos entry and then tts-pad entries follow, exactly as `build_talker_inputs` lays them out offline); each new code
  goes to the streaming token2wav, which returns audio as soon as a chunk's look-ahead codes exist. Being a plain
  generator, the loop stops the moment its consumer stops iterating, and an exception inside any model surfaces at the
  `for` loop. `OmniSession` hands `stream_reply` a prompt whose start is already in the Thinker's cache.
"""

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import GenerationMixin

from ..common.tmrope import media_layout
from ..processing.budgets import check_generation_budget
from ..talker.speech_budget import cap_for_reply, check_speech_arguments, talker_code_budget
from ..talker.talker_inputs import build_talker_inputs
from ..token2wav.background import BackgroundStream
from ..token2wav.streaming import StreamingWindow
from ..voices.speakers import Speaker
from .decoding import StepDecoder
from .events import STEP_TAKEN, AudioChunk, StreamStats, TextDelta, step_markers_enabled
from .forward_recording import record_thinker_forwards
from .pipeline_compat import pipeline_generate_arguments
from .reply import IncrementalText, ReplyState

SUBMODEL_PREFIXES = ("thinker_", "talker_", "token2wav_")


def route_generation_kwargs(kwargs: dict) -> dict[str, dict]:
    """Route `thinker_*` / `talker_*` / `token2wav_*` keyword arguments to their stage (prefix removed); unprefixed
    ones go to the Thinker, whose `generate` the full model's `generate` extends."""
    routed: dict[str, dict] = {prefix[:-1]: {} for prefix in SUBMODEL_PREFIXES}
    for key, value in kwargs.items():
        prefix = next((p for p in SUBMODEL_PREFIXES if key.startswith(p)), "thinker_")
        routed[prefix[:-1]][key.removeprefix(prefix)] = value
    return routed


@dataclass
class OmniRequest:
    """What one reply needs besides its prompt, built once per call by `OmniGenerationMixin.build_request`.

    Attributes:
        speaker: the voice identity ([`Speaker`]: Talker bos entry, reference mel, x-vector); None for text only.
        voice_adapter: a loaded LoRA voice adapter name (`model.voice_adapters`), one per prompt, or None (base).
        thinker_kwargs / talker_kwargs / token2wav_kwargs: keyword arguments of each stage.
        media_layout: the prompt's media layout (grids, audio lengths, `use_audio_in_video`): both decoders' TMRoPE ids.
        generator: the token2wav ODE noise.
    """

    speaker: Speaker | None = None
    voice_adapter: str | list[str | None] | None = None
    thinker_kwargs: dict = field(default_factory=dict)
    talker_kwargs: dict = field(default_factory=dict)
    token2wav_kwargs: dict = field(default_factory=dict)
    media_layout: dict = field(default_factory=dict)
    generator: torch.Generator | None = None
    talker_budget_from_text: bool = False  # the Talker's max_new_tokens is derived (`talker.speech_budget`)

    @property
    def speaks(self) -> bool:
        return self.speaker is not None

    def row_adapter(self, row: int) -> str | None:
        """The voice adapter of batch row `row`."""
        return self.voice_adapter[row] if isinstance(self.voice_adapter, list) else self.voice_adapter


@dataclass
class ReplyPrompt:
    """The prompt of a streamed reply: `input_ids` `(1, length)`, with the Thinker's extra inputs (media, or a
    prefilled `cache` and `position_ids`) and, for a prefilled cache, the Thinker track `(inputs_embeds,
    last_hidden_state)` of the positions already in it (`prefix_track`). `record`: a list that receives the
    `(inputs_embeds, last_hidden_state)` of each of the reply's Thinker forwards (a conversation keeps them)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None = None
    thinker_inputs: dict = field(default_factory=dict)
    prefix_track: tuple[torch.Tensor, torch.Tensor] | None = None
    record: list | None = None


class OmniGenerationMixin(GenerationMixin):
    """`generate` and `stream` of the full model (see the module docstring)."""

    def build_request(
        self,
        speaker: str | Speaker = "Chelsie",
        return_audio: bool | None = None,
        voice_adapter: str | list[str | None] | None = None,
        thinker_max_new_tokens: int = 1024,
        talker_max_new_tokens: int | None = None,
        generator: torch.Generator | None = None,
        stage_kwargs: dict[str, dict] | None = None,
        **kwargs,
    ) -> OmniRequest:
        """One request from a call's keyword arguments.

        Args:
            speaker: a name in `self.speakers` (or a [`Speaker`]); ignored for a text-only reply.
            return_audio: default: whether the Talker is enabled. False: the Thinker alone.
            voice_adapter: a loaded LoRA voice adapter (`model.voice_adapters`: the Talker's, and the DiT's when the
                adapter has one), or one per prompt; None: the base model. (`voice=` is its deprecated name.)
            talker_max_new_tokens: at most this many speech codes (50 per second); default: a cap that follows the
                reply's length (`omni_hf.talker.speech_budget`, at most 4096).
            thinker_* / talker_* / token2wav_*: keyword arguments for each stage (e.g. `talker_do_sample=False`,
                `token2wav_num_inference_steps=10`); unprefixed ones and the media inputs go to the Thinker.
            generator: the token2wav ODE noise.
            stage_kwargs: the same per stage without prefixes, `{"thinker": {...}, "talker": {...}, "token2wav":
                {...}}` (for callers that already hold them apart, such as the server).
        """
        if "voice" in kwargs:
            warnings.warn(
                "`voice=` is deprecated and will be removed in omni_hf 0.3: pass the LoRA voice adapter as "
                "`voice_adapter=` (the voice identity is `speaker=`)",
                FutureWarning,
                stacklevel=3,
            )
            legacy = kwargs.pop("voice")
            voice_adapter = legacy if voice_adapter is None else voice_adapter
        speech_arguments = [k for k in kwargs if k.startswith(SUBMODEL_PREFIXES[1:])]
        speech_arguments += ["talker_max_new_tokens"] if talker_max_new_tokens is not None else []
        check_speech_arguments(self.has_talker, return_audio, speech_arguments)
        return_audio = self.has_talker if return_audio is None else return_audio
        if return_audio and not self.has_talker:
            raise ValueError(
                "This model has no talker/token2wav loaded: call enable_talker() or pass return_audio=False"
            )
        if return_audio and not isinstance(speaker, Speaker):
            speaker = self.speakers[speaker]
        for name in voice_adapter if isinstance(voice_adapter, list) else [voice_adapter]:
            if name is not None and name not in self.voice_adapters:
                raise ValueError(f"Unknown voice adapter {name!r}: loaded adapters are {self.voice_adapters.names}")
        routed = route_generation_kwargs(kwargs)
        for stage, options in (stage_kwargs or {}).items():
            if stage not in routed:
                raise ValueError(f"stage_kwargs has {stage!r}: the stages are {sorted(routed)}")
            routed[stage] |= options
        routed["thinker"] = {"max_new_tokens": thinker_max_new_tokens} | routed["thinker"]
        talker_budget = talker_code_budget(talker_max_new_tokens, routed["thinker"].get("max_new_tokens"))
        routed["talker"] = {"max_new_tokens": talker_budget} | routed["talker"]
        return OmniRequest(
            speaker=speaker if return_audio else None,
            voice_adapter=voice_adapter,
            thinker_kwargs=routed["thinker"],
            talker_kwargs=routed["talker"],
            token2wav_kwargs=routed["token2wav"],
            media_layout=media_layout(kwargs),
            generator=generator,
            talker_budget_from_text=talker_max_new_tokens is None,
        )

    # ---------------------------------------------------------------- whole replies
    @torch.no_grad()
    @pipeline_generate_arguments
    def generate(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None, **kwargs
    ):
        """Answer in text and, with `return_audio`, speech.

        Args:
            input_ids / attention_mask / media inputs: from `OmniProcessor` (batch of one or more prompts).
            **kwargs: `speaker`, `return_audio`, `voice_adapter`, `thinker_*` / `talker_*` / `token2wav_*`,
                `generator`: see [`~OmniGenerationMixin.build_request`].

        Returns:
            the Thinker's `sequences` `(batch, prompt + reply)`; with audio, `(sequences, waveform)` where waveform
            is a `(samples,)` float32 tensor at 24 kHz for one prompt, or a list of them for a batch.
        """
        request = self.build_request(**kwargs)
        thinker = self.thinker
        if input_ids is not None:
            check_generation_budget(input_ids, request.thinker_kwargs.get("max_new_tokens"), config=thinker.config)
        if not request.speaks:
            return thinker.generate(input_ids=input_ids, attention_mask=attention_mask, **request.thinker_kwargs)
        sequences, codes = self._speech_reply(request, input_ids, attention_mask)
        waveforms = []
        for row, row_codes in enumerate(codes):
            with self.voice_adapters.use_dit(request.row_adapter(row)):
                waveforms.append(
                    self.codes_to_waveform(
                        row_codes, request.speaker, generator=request.generator, **request.token2wav_kwargs
                    )
                )
        return sequences, (waveforms[0] if len(waveforms) == 1 else waveforms)

    @torch.no_grad()
    def generate_speech_codes(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """The Thinker's reply and the Talker's speech codes, without decoding them to audio (e.g. data for a
        code-to-wave stage). Arguments as for `generate`; returns `(sequences, [codes (m,) per prompt])`."""
        request = self.build_request(**kwargs)
        if not request.speaks:
            raise ValueError("generate_speech_codes needs the Talker: do not pass return_audio=False")
        check_generation_budget(input_ids, request.thinker_kwargs.get("max_new_tokens"), config=self.thinker.config)
        return self._speech_reply(request, input_ids, attention_mask)

    def _speech_reply(self, request: OmniRequest, input_ids, attention_mask):
        with self._thinker_track() as track:
            sequences = self.thinker.generate(
                input_ids=input_ids, attention_mask=attention_mask, **request.thinker_kwargs
            )
        if not torch.is_tensor(sequences):  # the caller asked for return_dict_in_generate
            sequences = sequences.sequences
        return sequences, self.speech_codes(request, input_ids, attention_mask, sequences, track)

    def speech_codes(self, request: OmniRequest, input_ids, attention_mask, sequences, track) -> list[torch.Tensor]:
        """The Talker's speech codes for each row of a finished Thinker generation, cut at the first end token.

        `track` holds the Thinker's `(inputs_embeds, last_hidden_state)` per forward (prefill, then each step)."""
        batch = input_ids.shape[0]
        if sequences.shape[1] - input_ids.shape[1] < 2:
            return [input_ids.new_zeros(0)] * batch
        eos = request.thinker_kwargs.get("eos_token_id", self.thinker.generation_config.eos_token_id)
        inputs = build_talker_inputs(
            self.thinker,
            self.talker.config,
            input_ids,
            sequences,
            track,
            request.speaker.bos_token_id,
            attention_mask,
            eos,
        )
        talker_kwargs = dict(request.talker_kwargs)
        if request.talker_budget_from_text:  # the reply is written: its length narrows the derived cap
            reply = sequences.shape[1] - input_ids.shape[1]
            talker_kwargs["max_new_tokens"] = cap_for_reply(talker_kwargs["max_new_tokens"], reply)
        return self.talker_codes(inputs, request.media_layout, request.voice_adapter, **talker_kwargs)

    def talker_codes(
        self, inputs: dict, media_layout: dict, voice_adapter=None, **talker_kwargs
    ) -> list[torch.Tensor]:
        """Run the Talker's `generate` on prepared inputs (`build_talker_inputs`, `(batch, ...)`) and return each row's
        codes `(m,)`, cut at the first codec end token."""
        with self.voice_adapters.use(voice_adapter):
            generated = self.talker.generate(**inputs, **media_layout, **talker_kwargs)
        generated = generated[:, inputs["input_ids"].shape[1] :]
        ends = torch.isin(generated, self._codec_ends())
        steps = torch.arange(generated.shape[1], device=generated.device)
        lengths = torch.where(ends, steps, generated.shape[1]).min(-1).values
        return [generated[i, : int(lengths[i])] for i in range(generated.shape[0])]

    def codes_to_waveform(self, codes: torch.Tensor, speaker: Speaker, generator=None, **token2wav_kwargs):
        """`(codes,)` speech codes → `(samples,)` float32 waveform at 24 kHz (empty for no codes), by the model's
        code-to-wave stage (`model.token2wav`, see `omni_hf.token2wav.code_to_wave`)."""
        stage = self.token2wav
        return stage.decode(codes, stage.speaker_conditioning(speaker), generator=generator, **token2wav_kwargs)

    def open_speech_stream(self, request: OmniRequest, window=None, background: bool = False, stage_context=None):
        """The code-to-wave stream of one spoken reply: the stage's stream for the request's speaker, with its noise
        generator and options; the DiT runs with the request's voice adapter (its DiT part, if any). `stage_context`
        (e.g. a stage timer) is entered around each stage call; `background` decodes on a worker thread."""
        adapters = self.voice_adapters

        @contextlib.contextmanager
        def stage(name: str):
            outer = stage_context(name) if stage_context is not None else contextlib.nullcontext()
            dit_adapter = adapters.use_dit(request.voice_adapter) if name == "dit" else contextlib.nullcontext()
            with outer, dit_adapter:
                yield

        code_to_wave = self.token2wav
        stream = code_to_wave.open_stream(
            code_to_wave.speaker_conditioning(request.speaker),
            window,
            generator=request.generator,
            stage_context=stage,
            batch_key=request.voice_adapter,
            **request.token2wav_kwargs,
        )
        return BackgroundStream(stream) if background else stream

    # ---------------------------------------------------------------- streamed replies
    def stream(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        tokenizer=None,
        window: StreamingWindow | None = None,
        background_token2wav: bool | None = None,
        **kwargs,
    ) -> Iterator[TextDelta | AudioChunk | StreamStats]:
        """Answer one prompt in text and speech *while* generating: an iterator of events.

        The Thinker and the Talker advance together (the Talker takes step `t` as soon as the Thinker's entry `t`
        exists) and token2wav decodes chunk by chunk, so audio starts long before the reply is finished. Greedy
        streaming gives the same text and codes as greedy `generate`.

        Args:
            input_ids / attention_mask / media inputs: from `OmniProcessor`, one prompt (batch of 1).
            tokenizer: a tokenizer or processor, to decode text increments (otherwise `TextDelta.text` is "").
            window: the token2wav chunking ([`StreamingWindow`]; default chunks of 2, 4, 8, 16, then 32 DiT blocks).
            background_token2wav: run the DiT and vocoder on a worker thread, overlapping the decoders (default: on
                CUDA only; on a few CPU cores the stages compete for the same cores and it was measured slower).
            **kwargs: `speaker`, `return_audio`, `voice_adapter`, `thinker_*` / `talker_*` / `token2wav_*`,
                `generator`: see [`~OmniGenerationMixin.build_request`].

        Yields:
            [`TextDelta`] per Thinker token, [`AudioChunk`] (float32 PCM at 24 kHz with its start time) whenever a
            chunk is final, and a last [`StreamStats`] (time to first text and audio, RTF per stage, counts).

        Example:

        ```python
        >>> for event in model.stream(**inputs, speaker="Chelsie", tokenizer=processor):
        ...     if isinstance(event, TextDelta):
        ...         print(event.text, end="", flush=True)
        ...     elif isinstance(event, AudioChunk):
        ...         player.write(event.audio)
        ```
        """
        request = self.build_request(**kwargs)
        prompt = ReplyPrompt(input_ids, attention_mask)
        return self.stream_reply(request, prompt, tokenizer, window, background_token2wav)

    def stream_reply(
        self,
        request: OmniRequest,
        prompt: ReplyPrompt,
        tokenizer=None,
        window: StreamingWindow | None = None,
        background_token2wav: bool | None = None,
    ) -> Iterator[TextDelta | AudioChunk | StreamStats]:
        """The events of one reply to `prompt` (see `stream`); the loop `stream`, `OmniSession` and servers share."""
        input_ids = prompt.input_ids
        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError(
                f"stream() takes one prompt: input_ids of shape (1, length), got {tuple(input_ids.shape)}"
            )
        if input_ids.shape[1] == 0:
            raise ValueError("stream() got an empty prompt (input_ids has no tokens)")
        if isinstance(request.voice_adapter, list):
            raise ValueError("stream() answers one prompt: pass one voice_adapter name, not a list")
        check_generation_budget(input_ids, request.thinker_kwargs.get("max_new_tokens"), config=self.thinker.config)
        if background_token2wav is None:
            background_token2wav = self.thinker.device.type == "cuda"
        return _ReplyLoop(self, request, prompt, tokenizer, window, background_token2wav).run()

    # ---------------------------------------------------------------- internals
    def _thinker_track(self):
        """Record, for every Thinker forward of this reply, its input embeddings and final hidden states (what the
        Talker reads), instead of keeping every layer's hidden states as `output_hidden_states=True` would."""
        return record_thinker_forwards(self.thinker)

    def _codec_ends(self) -> torch.Tensor:
        return torch.tensor(self.talker.config.codec_eos_token_ids, device=self.talker.device)


class _ReplyLoop:
    """One streamed reply driven alone (batch of one): a [`ReplyState`] advanced by `StepDecoder`s in one thread."""

    def __init__(self, model, request: OmniRequest, prompt: ReplyPrompt, tokenizer, window, background: bool):
        self.model, self.window, self.background = model, window, background
        self.state = ReplyState(model, request, prompt, tokenizer)
        self.markers = step_markers_enabled()

    def run(self) -> Iterator[TextDelta | AudioChunk | StreamStats]:
        state = self.state
        with self.model._thinker_track() as track:
            try:
                state.start_thinker(StepDecoder)
                while True:
                    if not state.thinker.finished:
                        yield self._thinker_step(track)
                    if not state.start_talker(StepDecoder, self.window, self.background, state.clock.charge):
                        if state.thinker.finished:
                            break  # text only, or a reply of fewer than 2 tokens (not spoken, as in `generate`)
                        continue
                    yield from self._talker_steps()
                    if state.talker.finished and state.thinker.finished:
                        break
            finally:
                state.close()
        yield from state.final_events()

    def _thinker_step(self, track: list) -> TextDelta:
        state = self.state
        with state.clock.charge("thinker"):
            token = state.thinker.step()
        embeds, hidden = track.pop()
        track.clear()
        return state.took_thinker_token(token, embeds, hidden)

    def _talker_steps(self) -> Iterator[AudioChunk]:
        """Every Talker step whose Thinker entry exists, and the audio chunks that become final."""
        state = self.state
        adapters = self.model.voice_adapters
        while not state.talker.finished and state.talker_entry_ready():
            with state.clock.charge("talker"), adapters.use(state.request.voice_adapter):
                code = state.talker.step()
            state.took_code(code)
            produced = False
            for chunk in state.speech.decode_ready():
                produced = True
                yield state.audio_event(chunk)
            if not produced and self.markers:
                yield STEP_TAKEN  # the serving engine may run another reply's step here


__all__ = ["IncrementalText", "OmniGenerationMixin", "OmniRequest", "ReplyPrompt", "route_generation_kwargs"]
