"""A user turn prefilled while it is recorded: spoken audio, or live video with its sound.

The audio encoder attends within chunks of `2 * n_window` mel frames (2 s), so each chunk is final as soon as its
frames are: `LiveTurn.append_audio` computes log-mel frames as samples arrive, encodes every complete chunk and
appends its tokens to the Thinker's cache (`PrefilledPrompt`). The last partial chunk is left to the reply's first
forward. With video, frames are encoded two at a time (one temporal patch) and the video and audio tokens are
prefilled interleaved in 2 s chunks, vision before audio, exactly as `OmniProcessor` lays out a video with
`use_audio_in_video=True`.

Exactness: the prefilled cache and final logits equal a one-shot prefill of the same prompt and features. The
features equal `OmniProcessor`'s except for one input-wide statistic: Whisper floors log-mels at `max - 8` over
the whole clip, which a stream cannot know in advance; the turn uses the running maximum, so bins more than 80 dB
below the loudest one may be floored at a lower level than the one-shot features when a later part is louder.
"""

import numpy as np
import torch

from ..common.tmrope import video_temporal_ids, vision_local_ids
from ..processing.image_processing import preprocess_video
from ..processing.media import as_video_clip
from ..processing.streaming_log_mel import AudioChunker
from .prefill import PrefilledPrompt, encode_audio_chunk


class LiveTurn:
    """The media of one user turn, prefilled into `prefilled` as it arrives.

    Args:
        thinker / processor: the model's Thinker and its `OmniProcessor`.
        prefilled: the cache to prefill into.
        media_base: the TMRoPE id the turn's media starts at.
        video_fps: frames per second of `append_video_frames` (None: an audio-only turn).
    """

    def __init__(self, thinker, processor, prefilled: PrefilledPrompt, media_base: int, video_fps: float | None):
        self.thinker, self.processor, self.prefilled = thinker, processor, prefilled
        self.media_base = media_base
        self.rope_tokens = thinker.rope_tokens
        self.audio = AudioChunker(processor.feature_extractor, thinker.config.audio_config.n_window)
        self.chunk_frames = self.audio.chunk_frames
        self.video_fps = video_fps
        if video_fps is not None:
            if video_fps <= 0:
                raise ValueError(f"video_fps must be positive, got {video_fps}")
            if self.chunk_frames // 4 != self.rope_tokens.tokens_per_chunk:
                raise NotImplementedError(
                    f"Live video needs audio encoder chunks of {self.rope_tokens.seconds_per_chunk} s "
                    f"(n_window={thinker.config.audio_config.n_window} gives {self.chunk_frames // 4} tokens per "
                    f"chunk, TMRoPE chunks have {self.rope_tokens.tokens_per_chunk})"
                )
            self.second_per_grid = float(np.float32(processor.image_processor.temporal_patch_size / video_fps))
        self.feature_chunks: list[np.ndarray] = []  # `(mels, frames)` of every chunk, in order
        self.audio_tokens = 0  # audio tokens prefilled (their local TMRoPE ids)
        self.frames: list[np.ndarray] = []  # video frames waiting for their temporal pair
        self.frame_size: tuple[int, int] | None = None
        self.grid: tuple[int, int, int] | None = None
        self.groups = 0  # temporal patches encoded
        self._video_queue: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (chunk, embeds, local ids)
        self._audio_queue: list[torch.Tensor] = []  # encoded audio chunks not yet prefilled (video turns)
        self._chunk = 0  # next 2 s chunk to prefill (video turns)

    @property
    def samples(self) -> int:
        return self.audio.samples

    @property
    def audio_frames(self) -> int:
        """Mel frames of the turn's audio so far."""
        return self.audio.frames

    @property
    def features(self):
        """The turn's streaming log-mel front end (`StreamingLogMel`)."""
        return self.audio.mel

    def append_audio(self, samples: np.ndarray) -> int:
        """Add 16 kHz mono float32 samples; encode every complete 2 s chunk and prefill it (in a video turn, once
        the chunk's frames are in too). Returns the audio tokens prefilled so far."""
        for chunk in self.audio.push(samples):
            self._encode_audio(chunk)
        self._advance()
        return self.audio_tokens

    def append_video_frames(self, frames) -> int:
        """Add frames `(n, H, W, 3)` uint8 (or a list of arrays / PIL images); every complete temporal pair is
        encoded at once. Returns the number of frames received."""
        if self.video_fps is None:
            raise ValueError("This turn was opened for audio only: pass video_fps=... for video")
        clip = as_video_clip(frames, fps=self.video_fps)
        size = clip.frames.shape[1:3]
        if self.frame_size is not None and size != self.frame_size:
            raise ValueError(f"Video frames must all have one size: got {size} after {self.frame_size}")
        self.frame_size = size
        self.frames.extend(clip.frames)
        temporal = self.processor.image_processor.temporal_patch_size
        while len(self.frames) >= temporal:
            self._encode_frames(np.stack(self.frames[:temporal]))
            del self.frames[:temporal]
        self._advance()
        return self.groups * temporal + len(self.frames)

    def finish(self) -> np.ndarray | None:
        """End the turn. Audio only: → the last (partial) chunk's features `(mels, frames)`, left for the reply's
        first forward. Video: everything is prefilled here; → None."""
        if self.video_fps is not None and self.groups == 0 and not self.frames:
            raise ValueError("This video turn has no frames: append_video_frames() before finishing the turn")
        tail = self.audio.finish()
        if self.video_fps is None:
            self.feature_chunks.append(tail)
            return tail
        if self.frames:  # an odd last frame is repeated, as the processor pads a video
            self._encode_frames(np.stack([self.frames[-1]] * 2))
            self.frames = []
        if tail.shape[1]:
            self._encode_audio(tail)
        self._advance(final=True)
        return None

    # ---------------------------------------------------------------- internals
    @torch.no_grad()
    def _encode_audio(self, features: np.ndarray) -> None:
        """Encode one audio chunk `(mels, frames ≤ chunk)`; an audio-only turn prefills it at once."""
        self.feature_chunks.append(features)
        tokens = encode_audio_chunk(self.thinker, features)
        if self.video_fps is None:
            self._prefill_audio(tokens)
        else:
            self._audio_queue.append(tokens)

    def _prefill_audio(self, tokens: torch.Tensor) -> None:
        local = torch.arange(self.audio_tokens, self.audio_tokens + tokens.shape[0], device=tokens.device)
        ids = torch.full((1, tokens.shape[0]), self.rope_tokens.audio_token_id, device=tokens.device)
        self.prefilled.append(ids, tokens.unsqueeze(0), (local + self.media_base).view(1, 1, -1).expand(3, 1, -1))
        self.audio_tokens += tokens.shape[0]

    @torch.no_grad()
    def _encode_frames(self, frames: np.ndarray) -> None:
        """Encode one temporal patch (2 frames `(2, H, W, 3)`) and queue its tokens with their chunk and local ids."""
        processor = self.processor
        patches, grid = preprocess_video(
            frames, processor.image_processor, processor.video_min_pixels, processor.video_max_pixels
        )
        self.grid = grid
        grid_thw = torch.tensor([grid], device=self.thinker.device)
        tokens = self.thinker.get_video_features(
            torch.from_numpy(patches).to(self.thinker.device), grid_thw
        ).pooler_output
        rope = self.rope_tokens
        t_id = video_temporal_ids(self.groups + 1, self.second_per_grid, rope.position_id_per_seconds)[-1:]
        local = vision_local_ids(torch.tensor(grid), rope.spatial_merge_size, t_id)
        self._video_queue.append((int(t_id) // rope.tokens_per_chunk, tokens, local))
        self.groups += 1

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


__all__ = ["LiveTurn"]
