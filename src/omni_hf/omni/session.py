"""Chunked prefill: a spoken user turn is encoded and prefilled while it is still being recorded.

The audio encoder attends within chunks of `2 * n_window` mel frames (2 s), so each chunk is final as soon as its
frames are: `OmniSession.append_audio` computes log-mel frames as samples arrive, encodes every complete chunk and
appends its 50 tokens to the Thinker's KV cache. When the turn ends, `stream()` only encodes the last partial
chunk and prefills it with the prompt suffix (`<|audio_eos|>`, the text, the assistant header) in the reply's first
forward.

Exactness: the prefilled cache and final logits equal a one-shot prefill of the same prompt and features. The
features equal `OmniProcessor`'s except for one input-wide statistic: Whisper floors log-mels at `max - 8` over
the whole clip, which a stream cannot know in advance; the session uses the running maximum, so bins more than 80 dB
below the loudest one may be floored at a lower level than the one-shot features when a later part is louder.
"""

from collections.abc import Iterator

import numpy as np
import torch

from ..common.tmrope import audio_token_lengths, get_rope_index, media_layout, video_temporal_ids, vision_local_ids
from ..processing.audio import check_audio_samples
from ..processing.image_processing import preprocess_video
from ..processing.media import as_video_clip
from ..processing.streaming_log_mel import StreamingLogMel
from .events import AudioChunk, StreamStats, TextDelta
from .generation_omni import ReplyPrompt
from .prefill import PrefilledPrompt, encode_audio_chunk


class OmniSession:
    """One user turn, prefilled while it is recorded, then answered with `stream()`.

    Spoken turns take `append_audio`; live video takes `append_video_frames` plus `append_audio` for its sound track
    (`video_fps` set): frames are encoded two at a time (one temporal patch) and the video and audio tokens are
    prefilled interleaved in 2 s chunks, vision before audio, exactly as `OmniProcessor` lays out a video with
    `use_audio_in_video=True`. Positions come from the same TMRoPE function as the one-shot prompt (checked at the end).

    Args:
        model: an [`OmniForConditionalGeneration`] in eval mode.
        processor: its [`OmniProcessor`] (chat template, tokenizer, Whisper and video settings).
        system: the system prompt (default: the processor's official one).
        video_fps: frames per second of the frames given to `append_video_frames` (None: an audio-only turn).

    Example:

    ```python
    >>> session = OmniSession(model, processor)
    >>> for samples in microphone_chunks():  # 16 kHz float32 arrays, any size
    ...     session.append_audio(samples)
    >>> for event in session.stream(text="", speaker="Chelsie"):  # only the last chunk and the suffix remain
    ...     ...
    ```
    """

    def __init__(self, model, processor, system: str | None = None, video_fps: float | None = None):
        self.model = model
        self.thinker = model.thinker
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.system = processor.default_system_prompt if system is None else system
        self.sampling_rate = processor.feature_extractor.sampling_rate
        config = self.thinker.config
        n_window = config.audio_config.n_window
        # Encoder chunks of 2·n_window frames; two at a time when n_window is odd, so that the pooled pairs of the
        # encoder's output never straddle two calls.
        self.chunk_frames = 2 * n_window * (1 + n_window % 2)
        self.rope_tokens = self.thinker.rope_tokens
        self.video_fps = video_fps
        if video_fps is not None:
            if video_fps <= 0:
                raise ValueError(f"video_fps must be positive, got {video_fps}")
            if self.chunk_frames // 4 != self.rope_tokens.tokens_per_chunk:
                raise NotImplementedError(
                    f"Live video needs audio encoder chunks of {self.rope_tokens.seconds_per_chunk} s "
                    f"(n_window={n_window} gives {self.chunk_frames // 4} tokens per chunk, TMRoPE chunks have "
                    f"{self.rope_tokens.tokens_per_chunk})"
                )
            self.second_per_grid = float(np.float32(processor.image_processor.temporal_patch_size / video_fps))
        self.features = StreamingLogMel(processor.feature_extractor)
        self._pending = np.zeros((config.audio_config.num_mel_bins, 0), dtype=np.float32)
        self._feature_chunks: list[np.ndarray] = []
        self.prefilled = PrefilledPrompt(self.thinker)
        self.closed = False
        self.audio_frames = 0
        self._audio_tokens = 0  # audio tokens prefilled (their local TMRoPE ids)
        self._frames: list[np.ndarray] = []  # video frames waiting for their temporal pair
        self._frame_size: tuple[int, int] | None = None
        self._grid: tuple[int, int, int] | None = None
        self._groups = 0  # temporal patches encoded
        self._video_queue: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (chunk, embeds, local ids)
        self._audio_queue: list[torch.Tensor] = []  # encoded audio chunks not yet prefilled (video turns)
        self._chunk = 0  # next 2 s chunk to prefill (video turns)
        prefix, _ = self._template("")
        ids = self._tokenize(prefix)
        positions, _ = get_rope_index(ids, self.rope_tokens, use_audio_in_video=video_fps is not None)
        self.prefilled.append(ids, self.thinker.get_input_embeddings()(ids), positions)
        self.media_base = int(positions.max()) + 1  # TMRoPE ids of the media item start here

    # ---------------------------------------------------------------- input
    def append_audio(self, samples: np.ndarray, sampling_rate: int | None = None) -> int:
        """Add recorded samples (16 kHz mono float32, any length); encode every complete 2 s chunk and prefill it
        (in a video turn, once the chunk's frames are in too). Returns the number of audio tokens prefilled so far."""
        self._check_open()
        samples = check_audio_samples(samples, sampling_rate, self.sampling_rate, source="append_audio samples")
        self._add_frames(self.features.push(samples))
        while self._pending.shape[1] >= self.chunk_frames:
            self._encode_audio(self._pending[:, : self.chunk_frames])
            self._pending = self._pending[:, self.chunk_frames :]
        self._advance()
        return self._audio_tokens

    def append_video_frames(self, frames) -> int:
        """Add video frames `(n, H, W, 3)` uint8 (or a list of `(H, W, 3)` arrays / PIL images) taken at `video_fps`;
        every complete pair (one temporal patch) is encoded at once. Returns the number of frames received."""
        self._check_open()
        if self.video_fps is None:
            raise ValueError("This session was opened for audio only: pass video_fps=... to OmniSession for video")
        clip = as_video_clip(frames, fps=self.video_fps)
        size = clip.frames.shape[1:3]
        if self._frame_size is not None and size != self._frame_size:
            raise ValueError(f"Video frames must all have one size: got {size} after {self._frame_size}")
        self._frame_size = size
        self._frames.extend(clip.frames)
        temporal = self.processor.image_processor.temporal_patch_size
        while len(self._frames) >= temporal:
            self._encode_frames(np.stack(self._frames[:temporal]))
            del self._frames[:temporal]
        self._advance()
        return self._groups * temporal + len(self._frames)

    @property
    def cache(self):
        """The Thinker's KV cache holding the prefilled positions (None once closed)."""
        return self.prefilled.cache

    @property
    def input_features(self) -> torch.Tensor:
        """`(1, mels, frames)` the features the session computed (for inspection and tests)."""
        return torch.from_numpy(np.concatenate(self._feature_chunks, axis=1)).unsqueeze(0)

    def finish_input(self, text: str = "") -> dict:
        """End the turn and build the prompt. In an audio-only turn the last (partial) chunk is not prefilled here:
        its features go to the reply's first forward with the prompt suffix, so both cost one forward.

        Returns the full prompt's `input_ids` `(1, length)` and TMRoPE `position_ids` `(3, 1, length)`, the media
        layout (`audio_feature_lengths`, and `video_grid_thw` / `video_second_per_grid` for video), and in an
        audio-only turn the last chunk's `input_features` `(1, mels, frames)` and `feature_attention_mask`.
        """
        self._check_open()
        if self.features.samples == 0:
            raise ValueError("The session has no audio: append_audio() before finishing the turn")
        if self.video_fps is not None and self._groups == 0 and not self._frames:
            raise ValueError("This video session has no frames: append_video_frames() before finishing the turn")
        self._add_frames(self.features.finish())
        self.closed = True
        device = self.thinker.device
        out = {}
        if self.video_fps is None:
            last = self._pending
            self._feature_chunks.append(last)
            n_last = int(audio_token_lengths(torch.tensor([last.shape[1]])).item())
            media_ids = torch.full((1, n_last), self.rope_tokens.audio_token_id, device=device)
            out["input_features"] = torch.from_numpy(last).unsqueeze(0).to(device)
            out["feature_attention_mask"] = torch.ones(1, last.shape[1], dtype=torch.long, device=device)
        else:
            if self._frames:  # an odd last frame is repeated, as the processor pads a video
                self._encode_frames(np.stack([self._frames[-1]] * 2))
                self._frames = []
            if self._pending.shape[1]:
                self._encode_audio(self._pending)
            self._advance(final=True)
            media_ids = self.prefilled.input_ids[:, :0]
            out["video_grid_thw"] = torch.tensor([[self._groups, *self._grid[1:]]], device=device)
            out["video_second_per_grid"] = torch.tensor([self.second_per_grid], device=device)
        _, suffix = self._template(text)
        input_ids = torch.cat([self.prefilled.input_ids, media_ids, self._tokenize(suffix)], dim=1)
        out["audio_feature_lengths"] = torch.tensor([self.audio_frames], device=device)
        layout = {
            k: v for k, v in out.items() if k in ("audio_feature_lengths", "video_grid_thw", "video_second_per_grid")
        }
        positions, _ = get_rope_index(
            input_ids, self.rope_tokens, use_audio_in_video=self.video_fps is not None, **layout
        )
        prefilled = self.prefilled.positions
        if not torch.equal(positions[..., : prefilled.shape[-1]], prefilled):
            raise RuntimeError("Internal error: the prefilled TMRoPE ids differ from the prompt's; please report it")
        return {"input_ids": input_ids, "position_ids": positions, **out}

    # ---------------------------------------------------------------- reply
    def stream(
        self,
        text: str = "",
        window=None,
        background_token2wav: bool | None = None,
        **kwargs,
    ) -> Iterator[TextDelta | AudioChunk | StreamStats]:
        """End the turn (with optional `text` after the media) and stream the reply: the events of
        `OmniForConditionalGeneration.stream`. `kwargs`: `speaker`, `return_audio`, `voice_adapter`, `thinker_*` /
        `talker_*` / `token2wav_*`, `generator` (see `OmniForConditionalGeneration.build_request`)."""
        request = self.model.build_request(**kwargs)
        prompt = self.finish_input(text)
        # The Talker's TMRoPE ids need the whole turn's audio length, not the last chunk's mask.
        request.media_layout = media_layout({k: v for k, v in prompt.items() if k != "feature_attention_mask"})
        if self.video_fps is not None:
            request.media_layout["use_audio_in_video"] = True
        thinker_inputs = {
            k: prompt[k] for k in ("position_ids", "input_features", "feature_attention_mask") if k in prompt
        }
        reply = ReplyPrompt(
            prompt["input_ids"],
            thinker_inputs=thinker_inputs | {"cache": self.prefilled.cache},
            prefix_track=self.prefilled.track(),
        )
        return self.model.stream_reply(request, reply, self.tokenizer, window, background_token2wav)

    def close(self) -> None:
        """Free the cache; any later input raises."""
        self.closed = True
        self.prefilled.close()

    # ---------------------------------------------------------------- internals
    def _check_open(self):
        if self.closed:
            raise RuntimeError("This session's turn is over (finished or closed): start a new OmniSession")

    def _template(self, text: str) -> tuple[str, str]:
        """The prompt text before the media placeholder and after it (with the paired audio start/end tokens of a
        video with its sound, as the processor writes them)."""
        kind = "audio" if self.video_fps is None else "video"
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": self.system}]},
            {"role": "user", "content": [{"type": kind, kind: None}, {"type": "text", "text": text}]},
        ]
        prompt = self.processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False, add_default_system_prompt=False
        )
        config = self.thinker.config
        token_id = config.audio_token_id if kind == "audio" else config.video_token_id
        prefix, suffix = prompt.split(self.tokenizer.convert_ids_to_tokens(token_id), 1)
        if kind == "video":
            audio_bos, audio_eos = self.tokenizer.convert_ids_to_tokens(
                [config.audio_start_token_id, config.audio_end_token_id]
            )
            prefix, suffix = prefix + audio_bos, audio_eos + suffix
        return prefix, suffix

    def _tokenize(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], dtype=torch.long, device=self.thinker.device)

    def _add_frames(self, frames: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, frames], axis=1)
        self.audio_frames += frames.shape[1]

    @torch.no_grad()
    def _encode_audio(self, features: np.ndarray) -> None:
        """Encode one audio chunk `(mels, frames ≤ chunk)`; an audio-only turn prefills it at once."""
        self._feature_chunks.append(features)
        tokens = encode_audio_chunk(self.thinker, features)
        if self.video_fps is None:
            self._prefill_audio(tokens)
        else:
            self._audio_queue.append(tokens)

    def _prefill_audio(self, tokens: torch.Tensor) -> None:
        local = torch.arange(self._audio_tokens, self._audio_tokens + tokens.shape[0], device=tokens.device)
        ids = torch.full((1, tokens.shape[0]), self.rope_tokens.audio_token_id, device=tokens.device)
        self.prefilled.append(ids, tokens.unsqueeze(0), (local + self.media_base).view(1, 1, -1).expand(3, 1, -1))
        self._audio_tokens += tokens.shape[0]

    @torch.no_grad()
    def _encode_frames(self, frames: np.ndarray) -> None:
        """Encode one temporal patch (2 frames `(2, H, W, 3)`) and queue its tokens with their chunk and local ids."""
        processor = self.processor
        patches, grid = preprocess_video(
            frames, processor.image_processor, processor.video_min_pixels, processor.video_max_pixels
        )
        self._grid = grid
        grid_thw = torch.tensor([grid], device=self.thinker.device)
        tokens = self.thinker.get_video_features(
            torch.from_numpy(patches).to(self.thinker.device), grid_thw
        ).pooler_output
        t_id = video_temporal_ids(self._groups + 1, self.second_per_grid, self.rope_tokens.position_id_per_seconds)[
            -1:
        ]
        local = vision_local_ids(torch.tensor(grid), self.rope_tokens.spatial_merge_size, t_id)
        self._video_queue.append((int(t_id) // self.rope_tokens.tokens_per_chunk, tokens, local))
        self._groups += 1

    def _advance(self, final: bool = False) -> None:
        """Prefill, in the processor's order, every 2 s chunk of a video turn whose frames and audio are complete:
        its video tokens (as soon as they exist), then its audio tokens (once no later frame can join the chunk)."""
        if self.video_fps is None:
            return
        while True:
            while self._video_queue and self._video_queue[0][0] <= self._chunk:
                _, tokens, local = self._video_queue.pop(0)
                ids = torch.full((1, tokens.shape[0]), self.rope_tokens.video_token_id, device=tokens.device)
                self.prefilled.append(
                    ids, tokens.unsqueeze(0), (local.to(tokens.device) + self.media_base).unsqueeze(1)
                )
            video_done = final or bool(self._video_queue)  # a later chunk's frame exists
            if not (video_done and (self._audio_queue or final)):
                return
            if self._audio_queue:
                self._prefill_audio(self._audio_queue.pop(0))
            self._chunk += 1
            if final and not self._audio_queue and not self._video_queue:
                return


__all__ = ["OmniSession", "StreamingLogMel"]
