"""A multi-turn conversation on one Thinker KV cache (`PrefilledPrompt`): spoken and filmed turns prefilled while
they are recorded (`LiveTurn`), replies kept. `OmniSession` is its one-turn use.

Each user message (spoken, filmed with its sound, or text with images) is appended to the cache, each reply's own
tokens stay in it (all but the last sampled one, which starts the next prefill), and the Talker reads the Thinker
track (input embedding + final hidden state) of the whole conversation, as in a one-shot request with the full
multi-turn prompt. A spoken turn's 2 s encoder chunks go into the cache as samples arrive; its last partial chunk goes
to the reply's first forward with the prompt suffix.

A reply stopped early (barge-in, cancel) keeps the tokens generated so far: the assistant message is closed with
`<|im_end|>` and the next user message follows it.
"""

import logging

import numpy as np
import torch

from ..common.tmrope import audio_token_lengths, get_rope_index, vision_local_ids
from ..processing.audio import check_audio_samples
from ..processing.literal_text import tokenize_filled
from .events import TextDelta
from .generation_omni import ReplyPrompt
from .live_turn import LiveTurn
from .prefill import PrefilledPrompt

logger = logging.getLogger(__name__)

_SENTINEL = "\x00"
_LAYOUT_KEYS = (
    "audio_feature_lengths",
    "image_grid_thw",
    "video_grid_thw",
    "video_second_per_grid",
    "use_audio_in_video",
)
_THINKER_KEYS = ("position_ids", "input_features", "feature_attention_mask", "pixel_values", "image_grid_thw")


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
        self.prefilled = PrefilledPrompt(self.thinker)  # every position in the cache, with its track
        self.audio_lengths: list[int] = []  # mel frames of every audio clip of the conversation, in order
        self.clip_features: list[np.ndarray] = []  # `(mels, frames)` streamed log-mels of every clip, in order
        self.pending: list[int] = []  # token ids after the cache, not prefilled yet
        self.image_grids: list[list[int]] = []  # `(t, h, w)` patch grid of every image of the conversation
        self.videos: list[tuple[list[int], float]] = []  # `(grid, seconds per grid)` of every live video
        self._pending_images: list[tuple[torch.Tensor, list[int]]] = []  # (pixel_values, grid) of pending images
        self.tail: np.ndarray | None = None  # `(mels, frames)` last chunk of the last spoken turn, not prefilled
        self.turns = 0
        self.turn: LiveTurn | None = None  # the spoken (or filmed) turn being recorded
        self._pieces = self._template_pieces()
        self._before_audio = (0, [], [])
        self._busy = False
        self._header_length = 0  # the assistant header's ids at the end of `pending` (0: not added)
        self._paired_marks = False  # `pending` holds a live video's start or end marks (see `_pending_positions`)
        self.closed = False

    @property
    def cache(self):
        """The Thinker's KV cache (None once closed)."""
        return self.prefilled.cache

    @property
    def input_ids(self) -> torch.Tensor:
        """`(1, n)` the ids of every position in the cache."""
        return self.prefilled.input_ids

    @property
    def positions(self) -> torch.Tensor:
        """`(3, 1, n)` their TMRoPE ids."""
        return self.prefilled.positions

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
        config = self.thinker.config
        video = self._render(
            [{"role": "user", "content": [{"type": "video", "video": None}, {"type": "text", "text": ""}]}]
        )
        video = video[len(system) :].replace(self.tokenizer.convert_ids_to_tokens(config.video_token_id), _SENTINEL, 1)
        video_before, video_after = video.split(_SENTINEL)
        audio_bos, audio_eos = self.tokenizer.convert_ids_to_tokens(
            [config.audio_start_token_id, config.audio_end_token_id]
        )
        return {
            "system": system,
            "audio_before": audio_before,
            "audio_after": audio_after,  # the user's text goes before its last `<|im_end|>`
            "video_before": video_before + audio_bos,  # a live video carries its sound, as with use_audio_in_video
            "video_after": audio_eos + video_after,
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
    def add_text(self, text: str, images: list | None = None, role: str = "user") -> None:
        """A typed user message, optionally with images before the text (PIL images or `(H, W, 3)` uint8 arrays);
        prefilled with the next spoken turn's start, or with the reply's prompt. `role` "assistant" or "system" adds
        a message of that role instead (text only), e.g. an earlier reply given by the client."""
        self._check_idle()
        if not isinstance(text, str):
            raise ValueError(f"add_text expects a string, got {type(text).__name__}")
        if role not in ("user", "assistant", "system") or (images and role != "user"):
            raise ValueError(f"add_text: role must be user, assistant or system (images: user only), got {role!r}")
        images = list(images or [])
        content = [{"type": "image", "image": None}] * len(images) + [{"type": "text", "text": _SENTINEL}]
        piece = self._render([{"role": role, "content": content}])[len(self._pieces["system"]) :]
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

    def begin_audio(self, video_fps: float | None = None) -> None:
        """Open a spoken user message (with `video_fps`: a filmed one, frames by `append_video_frames`, its sound by
        `append_audio`): its start (and anything pending) is prefilled now, so that its media can follow in the
        cache as they are recorded."""
        self._check_idle()
        self._before_audio = (self.prefilled.length, list(self.pending), list(self._pending_images))
        self.pending += self._start_message()
        self.pending += self._tokenize(self._pieces["audio_before" if video_fps is None else "video_before"])
        self._paired_marks = video_fps is not None
        self._flush()
        self.turn = LiveTurn(self.thinker, self.processor, self.prefilled, self.prefilled.next_position(), video_fps)

    @property
    def recording(self) -> bool:
        return self.turn is not None

    def append_audio(self, samples: np.ndarray, sampling_rate: int | None = None) -> int:
        """Add samples (16 kHz mono float32, or at `sampling_rate`) to the open message and prefill every complete
        2 s chunk. Returns the audio tokens prefilled so far in this message."""
        if self.turn is None:
            raise RuntimeError("No spoken message is open: call begin_audio() first")
        samples = check_audio_samples(samples, sampling_rate, self.sampling_rate, source="append_audio samples")
        return self.turn.append_audio(samples)

    def append_video_frames(self, frames) -> int:
        """Add frames `(n, H, W, 3)` uint8 to the open filmed message (`begin_audio(video_fps=...)`)."""
        if self.turn is None:
            raise RuntimeError("No filmed message is open: call begin_audio(video_fps=...) first")
        return self.turn.append_video_frames(frames)

    def end_audio(self, text: str = "") -> int:
        """Close the spoken (or filmed) message, with optional text after the media. A spoken message's last chunk
        and the message end wait for the next forward (the reply's first one). Returns the message's mel frames."""
        turn = self.turn
        if turn is None:
            raise RuntimeError("No spoken message is open: call begin_audio() first")
        if turn.samples == 0:
            raise ValueError("The spoken message has no audio: append_audio() before end_audio()")
        tail = turn.finish()
        self.audio_lengths.append(turn.audio_frames)
        self.clip_features.append(np.concatenate(turn.feature_chunks, axis=1))
        end = self._pieces["reply_end"]
        if turn.video_fps is None:
            self.tail = tail
            n_tail = int(audio_token_lengths(torch.tensor([tail.shape[1]])).item())
            after = self._pieces["audio_after"]
            self.pending = [self.audio_token_id] * n_tail + tokenize_filled(
                self.tokenizer, after[: -len(end)] + _SENTINEL + end, _SENTINEL, text
            )  # typed text stays text
        else:
            self.videos.append(([turn.groups, *turn.grid[1:]], turn.second_per_grid))
            after = self._pieces["video_after"]
            self.pending = tokenize_filled(self.tokenizer, after[: -len(end)] + _SENTINEL + end, _SENTINEL, text)
            self._paired_marks = True  # `<|audio_eos|><|vision_eos|>` share one TMRoPE id
        self.turn = None
        self.turns += 1
        return turn.audio_frames

    def cancel_audio(self) -> None:
        """Drop the open spoken message (`input_audio_buffer.clear`): the cache is cut back to where it began."""
        if self.turn is None:
            return
        keep, self.pending, self._pending_images = self._before_audio
        self.prefilled.truncate(keep)
        self.turn = None

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
        self.add_header()
        input_ids, positions, inputs = self._uncached_inputs()
        request.media_layout = self._media_layout(input_ids.device)
        forwards: list = []  # the reply's Thinker forwards: what it adds to the conversation's track
        reply = ReplyPrompt(
            input_ids,
            thinker_inputs=inputs | {"position_ids": positions, "cache": self.cache},
            prefix_track=self.prefilled.track(),
            record=forwards,
        )
        events = self.model.stream_reply(request, reply, self.tokenizer, window, background_token2wav)
        header_length, self._header_length = self._header_length, 0
        return self._keep_reply(events, forwards, input_ids, positions, header_length)

    def add_header(self) -> None:
        """Open the assistant's reply (`<|im_start|>assistant`) after the pending user message (once)."""
        if not self._header_length:
            header = self._tokenize(self._pieces["header"])
            self.pending += header
            self._header_length = len(header)

    def prompt(self) -> tuple[dict, dict]:
        """The whole prompt so far: `(inputs, media_layout)`. `inputs`: `input_ids` `(1, length)`, TMRoPE
        `position_ids` `(3, 1, length)` and the Thinker inputs of the positions not in the cache yet (the last spoken
        chunk's `input_features` `(1, mels, frames)` and `feature_attention_mask`, pending images); `media_layout`:
        the conversation's media (`audio_feature_lengths`, `image_grid_thw`, `video_grid_thw`, ...)."""
        input_ids, positions, inputs = self._uncached_inputs()
        return {"input_ids": input_ids, "position_ids": positions, **inputs}, self._media_layout(input_ids.device)

    def _keep_reply(self, events, forwards: list, input_ids, positions, header_length):
        """Pass the events on; afterwards (also when stopped early) add what the Thinker forwarded to the history."""
        generated: list[int] = []
        self._busy = True
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    generated += event.token_ids
                yield event
        finally:
            events.close()
            self._busy = False
            self._after_reply(forwards, generated, input_ids, positions, header_length)

    def _after_reply(self, forwards, generated, input_ids, positions, header_length):
        if not forwards:  # stopped before the prompt's forward: drop the empty assistant message
            del self.pending[len(self.pending) - header_length :]
            return
        self._pending_images = []
        kept = generated[:-1]  # the last sampled token was never forwarded: it starts the next prefill
        past = self.prefilled.length
        start = int(positions.max()) + 1
        reply = torch.arange(start, start + len(kept), device=positions.device).view(1, 1, -1).expand(3, 1, -1)
        ids = torch.cat([input_ids[:, past:], torch.tensor([kept], dtype=torch.long, device=input_ids.device)], dim=1)
        self.prefilled.append_forwarded(ids, torch.cat([positions[..., past:], reply], dim=-1), forwards)
        self.tail, self._paired_marks = None, False
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
        positions = torch.cat([self.positions, self._pending_positions(start, self._paired_marks).to(device)], dim=-1)
        self._check_positions(input_ids, positions)
        return input_ids, positions, inputs

    def _pending_positions(self, start: int, paired_bos: bool = False) -> torch.Tensor:
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
                if paired_bos:  # a video with its sound: `<|audio_bos|>` shares `<|vision_bos|>`'s id, as one-shot
                    text = torch.tensor([ids[i : i + n]])
                    local = get_rope_index(text, self.thinker.rope_tokens, use_audio_in_video=True)[0][:, 0] + start
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
        if self.videos:
            layout["video_grid_thw"] = torch.tensor([grid for grid, _ in self.videos], device=device)
            layout["video_second_per_grid"] = torch.tensor([s for _, s in self.videos], device=device)
            layout["use_audio_in_video"] = True
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
        if self.turn is not None:
            raise RuntimeError("A spoken message is open: end_audio() (or cancel_audio()) first")
        if self._busy:
            raise RuntimeError("A reply is being streamed: finish or close it first")

    @torch.no_grad()
    def _flush(self) -> None:
        """Prefill the pending ids (and the last spoken turn's pending chunk) in one forward."""
        if not self.pending:
            return
        input_ids, positions, inputs = self._uncached_inputs()
        past = self.prefilled.length
        ids = input_ids[:, past:]
        embeds = self.thinker.embed_inputs(
            ids,
            inputs.get("input_features"),
            inputs.get("feature_attention_mask"),
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
        )
        self.prefilled.append(ids, embeds, positions[..., past:])
        self.pending, self.tail, self._pending_images, self._paired_marks = [], None, [], False

    def close(self) -> None:
        """Free the cache and the track; the conversation cannot be used afterwards."""
        self.closed = True
        self.prefilled.close()
        self.pending, self.tail, self.turn = [], None, None


__all__ = ["OmniConversation"]
