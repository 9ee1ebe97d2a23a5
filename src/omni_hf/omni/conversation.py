"""A multi-turn conversation on one Thinker KV cache: spoken turns prefilled while they are recorded, replies kept.

`OmniSession` answers one turn and drops its cache. `OmniConversation` keeps the cache across turns: each user
message (spoken, or text) is appended to it, each reply's own tokens stay in it (all but the last sampled one, which
starts the next prefill), and the Talker reads the Thinker track (input embedding + final hidden state) of the whole
conversation, as in a one-shot request with the full multi-turn prompt.

Spoken turns are prefilled exactly as in `OmniSession` (2 s encoder chunks into the cache as samples arrive; the last
partial chunk goes to the reply's first forward with the prompt suffix), so the first turn's prompt, cache and reply
equal an `OmniSession`'s.

A reply stopped early (barge-in, cancel) keeps the tokens generated so far: the assistant message is closed with
`<|im_end|>` and the next user message follows it.
"""

import logging

import numpy as np
import torch
from transformers.cache_utils import DynamicCache

from ..common.tmrope import audio_token_lengths, get_rope_index, vision_local_ids
from ..processing.literal_text import tokenize_filled
from ..processing.streaming_log_mel import StreamingLogMel
from .events import TextDelta
from .forward_recording import record_thinker_forwards
from .generation_omni import ReplyPrompt
from .prefill import encode_audio_chunk, forward_into_cache

logger = logging.getLogger(__name__)

_SENTINEL = "\x00"


class OmniConversation:
    """A spoken or typed multi-turn conversation: `begin_audio` / `append_audio` / `end_audio`, `add_text`, then
    `stream()` answers with the whole conversation as context.

    Args:
        model: an [`OmniForConditionalGeneration`] in eval mode.
        processor: its [`OmniProcessor`].
        system: the system prompt (default: the processor's official one).

    Example:

    ```python
    >>> conversation = OmniConversation(model, processor)
    >>> conversation.begin_audio()
    >>> for samples in microphone_chunks():  # 16 kHz float32
    ...     conversation.append_audio(samples)
    >>> conversation.end_audio()
    >>> for event in conversation.stream(speaker="Chelsie"):  # TextDelta / AudioChunk / StreamStats
    ...     ...
    >>> conversation.add_text("And in French?")  # the reply above is part of the context
    >>> reply = list(conversation.stream(speaker="Chelsie"))
    ```
    """

    def __init__(self, model, processor, system: str | None = None):
        self.model = model
        self.thinker = model.thinker
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.system = processor.default_system_prompt if system is None else system
        self.sampling_rate = processor.feature_extractor.sampling_rate
        config = self.thinker.config
        self.audio_token_id = config.audio_token_id
        self.image_token_id = config.image_token_id
        n_window = config.audio_config.n_window
        self.chunk_frames = 2 * n_window * (1 + n_window % 2)  # as OmniSession: pooled pairs never straddle chunks
        self.num_mel_bins = config.audio_config.num_mel_bins
        self.cache = DynamicCache(config=config.text_config)
        device = self.thinker.device
        self.input_ids = torch.zeros(1, 0, dtype=torch.long, device=device)  # every position in the cache
        self.positions = torch.zeros(3, 1, 0, dtype=torch.long, device=device)
        self.track: list[tuple[torch.Tensor, torch.Tensor]] = []  # (inputs_embeds, last hidden) over the cache
        self.audio_lengths: list[int] = []  # mel frames of every audio clip of the conversation, in order
        self.clip_features: list[np.ndarray] = []  # `(mels, frames)` streamed log-mels of every clip, in order
        self._clip_chunks: list[np.ndarray] = []
        self.pending: list[int] = []  # token ids after the cache, not prefilled yet
        self.image_grids: list[list[int]] = []  # `(t, h, w)` patch grid of every image of the conversation
        self._pending_images: list[tuple[torch.Tensor, list[int]]] = []  # (pixel_values, grid) of pending images
        self.tail: np.ndarray | None = None  # `(mels, frames)` last chunk of the last spoken turn, not prefilled
        self.turns = 0
        self._features: StreamingLogMel | None = None  # the spoken turn being recorded
        self._chunk_features: np.ndarray | None = None
        self._audio_frames = 0
        self._audio_tokens = 0
        self._media_base = 0
        self._pieces = self._template_pieces()
        self._before_audio = (0, [], [])
        self._busy = False
        self.closed = False

    # ---------------------------------------------------------------- template
    def _render(self, messages: list[dict], generation_prompt: bool = False) -> str:
        system = {"role": "system", "content": [{"type": "text", "text": self.system}]}
        return self.processor.apply_chat_template(
            [system, *messages],
            add_generation_prompt=generation_prompt,
            tokenize=False,
            add_default_system_prompt=False,
        )

    def _template_pieces(self) -> dict[str, str]:
        """The chat template's text around each part of a message (the system message is rendered once)."""
        system = self._render([])
        audio = self.tokenizer.convert_ids_to_tokens(self.audio_token_id)
        user = self._render(
            [{"role": "user", "content": [{"type": "audio", "audio": None}, {"type": "text", "text": ""}]}]
        )
        user = user[len(system) :].replace(audio, _SENTINEL, 1)
        reply = self._render([{"role": "assistant", "content": [{"type": "text", "text": _SENTINEL}]}])
        audio_before, audio_after = user.split(_SENTINEL)
        return {
            "system": system,
            "audio_before": audio_before,
            "audio_after": audio_after,  # the user's text goes before its last `<|im_end|>`
            "header": self._render([], generation_prompt=True)[len(system) :],
            "reply_end": reply[len(system) :].split(_SENTINEL)[1],
        }

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _start_message(self) -> list[int]:
        """The system message's ids before the conversation's first message (none later)."""
        if self.turns == 0 and not self.input_ids.shape[1] and not self.pending:
            return self._tokenize(self._pieces["system"])
        return []

    # ---------------------------------------------------------------- input
    def add_text(self, text: str, images: list | None = None) -> None:
        """A typed user message, optionally with images before the text (PIL images or `(H, W, 3)` uint8 arrays);
        prefilled with the next spoken turn's start, or with the reply's prompt."""
        self._check_idle()
        if not isinstance(text, str):
            raise ValueError(f"add_text expects a string, got {type(text).__name__}")
        images = list(images or [])
        content = [{"type": "image", "image": None}] * len(images) + [{"type": "text", "text": _SENTINEL}]
        piece = self._render([{"role": "user", "content": content}])[len(self._pieces["system"]) :]
        placeholder = self.tokenizer.convert_ids_to_tokens(self.image_token_id)
        if images:
            out = self.processor.image_processor(images=images, return_tensors="pt")
            merge = self.processor.image_processor.merge_size
            pieces = piece.split(placeholder)
            piece = pieces[0]
            for grid, rest in zip(out["image_grid_thw"].tolist(), pieces[1:]):
                piece += placeholder * (grid[0] * grid[1] * grid[2] // merge**2) + rest
            sizes = [t * h * w for t, h, w in out["image_grid_thw"].tolist()]
            for pixels, grid in zip(torch.split(out["pixel_values"], sizes), out["image_grid_thw"].tolist()):
                self._pending_images.append((pixels, grid))
                self.image_grids.append(grid)
        self.pending += self._start_message()
        self.pending += tokenize_filled(self.tokenizer, piece, _SENTINEL, text)  # typed text stays text
        self.turns += 1

    def begin_audio(self) -> None:
        """Open a spoken user message: its start (and anything pending) is prefilled now, so that its audio chunks
        can follow in the cache as they are recorded."""
        self._check_idle()
        self._before_audio = (self.input_ids.shape[1], list(self.pending), list(self._pending_images))
        self.pending += self._start_message()
        self.pending += self._tokenize(self._pieces["audio_before"])
        self._flush()
        self._features = StreamingLogMel(self.processor.feature_extractor)
        self._chunk_features = np.zeros((self.num_mel_bins, 0), dtype=np.float32)
        self._audio_frames = self._audio_tokens = 0
        self._clip_chunks = []
        self._media_base = int(self.positions.max()) + 1

    @property
    def recording(self) -> bool:
        return self._features is not None

    def append_audio(self, samples: np.ndarray) -> int:
        """Add samples (16 kHz mono float32) to the open spoken message and prefill every complete 2 s chunk.
        Returns the audio tokens prefilled so far in this message."""
        if self._features is None:
            raise RuntimeError("No spoken message is open: call begin_audio() first")
        samples = np.asarray(samples)
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.number):
            raise ValueError(f"append_audio expects a 1-D array of samples, got shape {samples.shape}")
        self._add_frames(self._features.push(samples))
        while self._chunk_features.shape[1] >= self.chunk_frames:
            self._prefill_audio_chunk(self._chunk_features[:, : self.chunk_frames])
            self._chunk_features = self._chunk_features[:, self.chunk_frames :]
        return self._audio_tokens

    def end_audio(self, text: str = "") -> int:
        """Close the spoken message (with optional text after the audio). Its last chunk and the message end wait for
        the next forward (the reply's first one). Returns the message's mel frames."""
        if self._features is None:
            raise RuntimeError("No spoken message is open: call begin_audio() first")
        if self._features.samples == 0:
            raise ValueError("The spoken message has no audio: append_audio() before end_audio()")
        self._add_frames(self._features.finish())
        self.tail = self._chunk_features
        self.audio_lengths.append(self._audio_frames)
        self.clip_features.append(np.concatenate([*self._clip_chunks, self.tail], axis=1))
        n_tail = int(audio_token_lengths(torch.tensor([self.tail.shape[1]])).item())
        after, end = self._pieces["audio_after"], self._pieces["reply_end"]
        self.pending = [self.audio_token_id] * n_tail + tokenize_filled(
            self.tokenizer, after[: -len(end)] + _SENTINEL + end, _SENTINEL, text
        )
        self._features = self._chunk_features = None
        self.turns += 1
        return self._audio_frames

    def cancel_audio(self) -> None:
        """Drop the open spoken message (`input_audio_buffer.clear`): the cache is cut back to where it began."""
        if self._features is None:
            return
        keep, self.pending, self._pending_images = self._before_audio
        self.cache.crop(keep - self.cache.get_seq_length())  # negative: the number of positions to drop
        self.input_ids, self.positions = self.input_ids[:, :keep], self.positions[..., :keep]
        self._truncate_track(keep)
        self._features = self._chunk_features = None

    # ---------------------------------------------------------------- reply
    def stream(self, window=None, background_token2wav: bool | None = None, **kwargs):
        """Answer with the whole conversation as context: the events of `OmniForConditionalGeneration.stream`
        (`kwargs`: `speaker`, `return_audio`, `voice_adapter`, `thinker_*` / `talker_*` / `token2wav_*`, `generator`;
        see `OmniForConditionalGeneration.build_request`). Stopping the iteration early (e.g. `close()` on it) keeps
        the reply generated so far in the conversation."""
        self._check_idle()
        if not self.pending and self.tail is None:
            raise ValueError("Nothing to answer: add a user message (add_text or a spoken turn) first")
        request = self.model.build_request(**kwargs)
        header = self._tokenize(self._pieces["header"])
        self.pending += header
        input_ids, positions, inputs = self._uncached_inputs()
        request.media_layout = self._media_layout(input_ids.device)
        prompt = ReplyPrompt(
            input_ids,
            thinker_inputs=inputs | {"position_ids": positions, "cache": self.cache},
            prefix_track=self._prefix_track(),
        )
        events = self.model.stream_reply(request, prompt, self.tokenizer, window, background_token2wav)
        return self._keep_reply(events, input_ids, positions, len(header))

    def _keep_reply(self, events, input_ids, positions, header_length):
        """Pass the events on; afterwards (also when stopped early) add what the Thinker forwarded to the history."""
        generated: list[int] = []
        self._busy = True
        recorder = record_thinker_forwards(self.thinker)
        recorded = recorder.__enter__()
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    generated += event.token_ids
                yield event
        finally:
            events.close()
            recorder.__exit__(None, None, None)
            self._busy = False
            self._after_reply(recorded, generated, input_ids, positions, header_length)

    def _after_reply(self, recorded, generated, input_ids, positions, header_length):
        if not recorded:  # stopped before the prompt's forward: drop the empty assistant message
            del self.pending[len(self.pending) - header_length :]
            return
        self.track += recorded
        self._pending_images = []
        kept = generated[:-1]  # the last sampled token was never forwarded: it starts the next prefill
        device = input_ids.device
        self.input_ids = torch.cat([input_ids, torch.tensor([kept], dtype=torch.long, device=device)], dim=1)
        start = int(positions.max()) + 1
        reply = torch.arange(start, start + len(kept), device=positions.device).view(1, 1, -1)
        self.positions = torch.cat([positions, reply.expand(3, 1, -1)], dim=-1)
        self.tail = None
        cached = self.cache.get_seq_length()
        if cached != self.input_ids.shape[1]:
            raise RuntimeError(f"Internal error: cache holds {cached} positions, history {self.input_ids.shape[1]}")
        end = self._tokenize(self._pieces["reply_end"])
        last = generated[-1:]
        self.pending = last + (end[1:] if last == end[:1] else end)  # a cut reply is closed with <|im_end|>

    def _uncached_inputs(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """The full prompt `(1, length)`, its TMRoPE ids `(3, 1, length)` and the pending audio chunk's features."""
        device = self.input_ids.device
        pending = torch.tensor([self.pending], dtype=torch.long, device=device)
        input_ids = torch.cat([self.input_ids, pending], dim=1)
        inputs = {}
        if self.tail is not None:
            inputs["input_features"] = torch.from_numpy(self.tail).unsqueeze(0).to(device)
            inputs["feature_attention_mask"] = torch.ones(1, self.tail.shape[1], dtype=torch.long, device=device)
        if self._pending_images:
            inputs["pixel_values"] = torch.cat([p for p, _ in self._pending_images]).to(device)
            inputs["image_grid_thw"] = torch.tensor([g for _, g in self._pending_images], device=device)
        start = int(self.positions.max()) + 1 if self.positions.numel() else 0
        positions = torch.cat([self.positions, self._pending_positions(start).to(device)], dim=-1)
        self._check_positions(input_ids, positions)
        return input_ids, positions, inputs

    def _pending_positions(self, start: int) -> torch.Tensor:
        """TMRoPE ids `(3, 1, pending)`: text and audio-only ids are consecutive on all three axes (the tail
        continues its clip's ids); an image's tokens get (0, row, column) from where it starts, as in the prompt."""
        merge = self.processor.image_processor.merge_size
        ids, grids, pieces, i = self.pending, iter(self._pending_images), [], 0
        while i < len(ids):
            if ids[i] == self.image_token_id:
                _, grid = next(grids)
                local = vision_local_ids(torch.tensor(grid), merge, torch.zeros(1, dtype=torch.long)) + start
                i += local.shape[1]
            else:
                n = next((k for k in range(i, len(ids)) if ids[k] == self.image_token_id), len(ids)) - i
                local = torch.arange(start, start + n).expand(3, -1)
                i += n
            pieces.append(local)
            start = int(local.max()) + 1
        if not pieces:
            return torch.zeros(3, 1, 0, dtype=torch.long)
        return torch.cat(pieces, dim=1).unsqueeze(1)

    def _media_layout(self, device) -> dict:
        layout = {}
        if self.audio_lengths:
            layout["audio_feature_lengths"] = torch.tensor(self.audio_lengths, device=device)
        if self.image_grids:
            layout["image_grid_thw"] = torch.tensor(self.image_grids, device=device)
        return layout

    def _check_positions(self, input_ids: torch.Tensor, positions: torch.Tensor) -> None:
        expected, _ = get_rope_index(input_ids, self.thinker.rope_tokens, **self._media_layout("cpu"))
        if not torch.equal(expected.to(positions.device), positions):
            # A reply containing a media placeholder id (possible with random weights) makes the one-shot layout
            # differ; the cache's own positions are still consistent.
            logger.warning("The conversation's TMRoPE ids differ from a one-shot prompt's layout")

    # ---------------------------------------------------------------- internals
    def _check_idle(self):
        if self.closed:
            raise RuntimeError("This conversation is closed")
        if self._features is not None:
            raise RuntimeError("A spoken message is open: end_audio() (or cancel_audio()) first")
        if self._busy:
            raise RuntimeError("A reply is being streamed: finish or close it first")

    def _add_frames(self, frames: np.ndarray) -> None:
        self._chunk_features = np.concatenate([self._chunk_features, frames], axis=1)
        self._audio_frames += frames.shape[1]

    @torch.no_grad()
    def _prefill_audio_chunk(self, features: np.ndarray) -> None:
        self._clip_chunks.append(features)
        tokens = encode_audio_chunk(self.thinker, features)
        n = tokens.shape[0]
        local = torch.arange(self._audio_tokens, self._audio_tokens + n, device=tokens.device) + self._media_base
        ids = torch.full((1, n), self.audio_token_id, device=tokens.device)
        self._prefill(ids, tokens.unsqueeze(0), local.view(1, 1, -1).expand(3, 1, -1))
        self._audio_tokens += n

    @torch.no_grad()
    def _flush(self) -> None:
        """Prefill the pending ids (and the last spoken turn's pending chunk) in one forward."""
        if not self.pending:
            return
        input_ids, positions, inputs = self._uncached_inputs()
        past = self.input_ids.shape[1]
        ids = input_ids[:, past:]
        embeds = self.thinker.embed_inputs(
            ids,
            inputs.get("input_features"),
            inputs.get("feature_attention_mask"),
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
        )
        self._prefill(ids, embeds, positions[..., past:])
        self.pending, self.tail, self._pending_images = [], None, []

    def _prefill(self, ids: torch.Tensor, embeds: torch.Tensor, positions: torch.Tensor) -> None:
        self.cache, embeds, hidden = forward_into_cache(self.thinker, self.cache, embeds, positions)
        self.track.append((embeds, hidden))
        self.input_ids = torch.cat([self.input_ids, ids], dim=1)
        self.positions = torch.cat([self.positions, positions], dim=-1)

    def _truncate_track(self, length: int) -> None:
        kept, total = [], 0
        for embeds, hidden in self.track:
            if total >= length:
                break
            n = min(embeds.shape[1], length - total)
            kept.append((embeds[:, :n], hidden[:, :n]))
            total += n
        self.track = kept

    def _prefix_track(self):
        if not self.track:
            return None
        return torch.cat([e for e, _ in self.track], dim=1), torch.cat([h for _, h in self.track], dim=1)

    def close(self) -> None:
        """Free the cache and the track; the conversation cannot be used afterwards."""
        self.closed = True
        self.cache = None
        self.track.clear()
        self.pending, self.tail, self._features = [], None, None


__all__ = ["OmniConversation"]
