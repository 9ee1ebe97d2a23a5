"""One user turn, prefilled while it is recorded, then answered: a one-turn [`OmniConversation`].

The audio encoder attends within 2 s chunks, so each chunk is encoded and prefilled as soon as its samples arrive
(`omni_hf.omni.live_turn`); when the turn ends, `stream()` only encodes the last partial chunk and prefills it with
the prompt suffix (`<|audio_eos|>`, the text, the assistant header) in the reply's first forward. The prefilled
cache and final logits equal a one-shot prefill of the same prompt and features (see `live_turn` for the one
input-wide statistic a stream cannot know in advance).
"""

from collections.abc import Iterator

import numpy as np
import torch

from ..common.tmrope import get_rope_index
from ..processing.streaming_log_mel import StreamingLogMel
from .conversation import OmniConversation
from .events import AudioChunk, StreamStats, TextDelta


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
        self.processor = processor
        self.video_fps = video_fps
        self.conversation = OmniConversation(model, processor, system)
        self.conversation.begin_audio(video_fps=video_fps)
        self.closed = False

    @property
    def thinker(self):
        return self.model.thinker

    @property
    def features(self) -> StreamingLogMel:
        """The streaming log-mel front end of the turn."""
        return self._turn().features

    # ---------------------------------------------------------------- input
    def append_audio(self, samples: np.ndarray, sampling_rate: int | None = None) -> int:
        """Add recorded samples (16 kHz mono float32, any length); encode every complete 2 s chunk and prefill it
        (in a video turn, once the chunk's frames are in too). Returns the number of audio tokens prefilled so far."""
        self._check_open()
        return self.conversation.append_audio(samples, sampling_rate)

    def append_video_frames(self, frames) -> int:
        """Add video frames `(n, H, W, 3)` uint8 (or a list of `(H, W, 3)` arrays / PIL images) taken at `video_fps`;
        every complete pair (one temporal patch) is encoded at once. Returns the number of frames received."""
        self._check_open()
        if self.video_fps is None:
            raise ValueError("This session was opened for audio only: pass video_fps=... to OmniSession for video")
        return self.conversation.append_video_frames(frames)

    @property
    def cache(self):
        """The Thinker's KV cache holding the prefilled positions (None once closed)."""
        return self.conversation.cache

    @property
    def input_features(self) -> torch.Tensor:
        """`(1, mels, frames)` the features the session computed (for inspection and tests)."""
        chunks = self.conversation.clip_features or [np.concatenate(self._turn().feature_chunks, axis=1)]
        return torch.from_numpy(chunks[-1]).unsqueeze(0)

    def finish_input(self, text: str = "") -> dict:
        """End the turn and build the prompt. In an audio-only turn the last (partial) chunk is not prefilled here:
        its features go to the reply's first forward with the prompt suffix, so both cost one forward.

        Returns the full prompt's `input_ids` `(1, length)` and TMRoPE `position_ids` `(3, 1, length)`, the media
        layout (`audio_feature_lengths`, and `video_grid_thw` / `video_second_per_grid` for video), and in an
        audio-only turn the last chunk's `input_features` `(1, mels, frames)` and `feature_attention_mask`.
        """
        self._check_open()
        turn = self._turn()
        if turn.samples == 0:
            raise ValueError("The session has no audio: append_audio() before finishing the turn")
        if self.video_fps is not None and turn.groups == 0 and not turn.frames:
            raise ValueError("This video session has no frames: append_video_frames() before finishing the turn")
        self.closed = True
        conversation = self.conversation
        conversation.end_audio(text)
        conversation.add_header()
        inputs, layout = conversation.prompt()
        layout.pop("use_audio_in_video", None)
        positions, _ = get_rope_index(
            inputs["input_ids"], self.thinker.rope_tokens, use_audio_in_video=self.video_fps is not None, **layout
        )
        if not torch.equal(positions, inputs["position_ids"]):
            raise RuntimeError("Internal error: the prefilled TMRoPE ids differ from the prompt's; please report it")
        return inputs | layout

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
        self.model.build_request(**kwargs)  # bad arguments are refused before the turn is closed
        self.finish_input(text)
        return self.conversation.stream(window, background_token2wav, **kwargs)

    def close(self) -> None:
        """Free the cache; any later input raises."""
        self.closed = True
        self.conversation.close()

    # ---------------------------------------------------------------- internals
    def _check_open(self):
        if self.closed:
            raise RuntimeError("This session's turn is over (finished or closed): start a new OmniSession")

    def _turn(self):
        return self.conversation.turn


__all__ = ["OmniSession", "StreamingLogMel"]
