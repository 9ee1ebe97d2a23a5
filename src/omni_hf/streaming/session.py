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

import math

import numpy as np
import torch
from transformers.cache_utils import DynamicCache

from ..models.tmrope import audio_token_lengths
from .events import AudioChunk, StreamStats, TextDelta
from .generate import stream_reply


class StreamingLogMel:
    """Whisper log-mel features of a 16 kHz stream, frame by frame (`(mels, frames)` float32 numpy arrays).

    Frame `i` covers samples `[hop·i − n_fft/2, hop·i + n_fft/2)` (reflect padding at the start, zeros after the
    end, as in `WhisperFeatureExtractor`), so it is final once those samples exist; a clip of `n` samples has
    `ceil(n / hop)` frames.
    """

    def __init__(self, feature_extractor):
        self.n_fft, self.hop = feature_extractor.n_fft, feature_extractor.hop_length
        self.filters = torch.from_numpy(np.asarray(feature_extractor.mel_filters)).float()  # (freqs, mels)
        self.window = torch.hann_window(self.n_fft)
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0  # absolute index of buffer[0]
        self.head = np.zeros(0, dtype=np.float32)  # the first n_fft/2 + 1 samples (reflect padding of frame 0..)
        self.samples = 0
        self.frames = 0
        self.running_max = -math.inf

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self.head.size <= self.n_fft // 2:
            self.head = np.concatenate([self.head, samples[: self.n_fft // 2 + 1 - self.head.size]])
        self.buffer = np.concatenate([self.buffer, samples])
        self.samples += samples.size
        ready = max(0, -(-(self.samples - self.n_fft // 2) // self.hop))  # frames whose last sample exists
        ready = ready if self.head.size > self.n_fft // 2 else 0
        return self._frames(ready)

    def finish(self) -> np.ndarray:
        """The remaining frames (the end is zero-padded)."""
        return self._frames(-(-self.samples // self.hop))

    def _frames(self, stop: int) -> np.ndarray:
        start = self.frames
        if stop <= start:
            return np.zeros((self.filters.shape[1], 0), dtype=np.float32)
        half = self.n_fft // 2
        first, last = self.hop * start - half, self.hop * (stop - 1) + half  # sample span [first, last)
        pieces = []
        if first < 0:  # reflect padding: sample -k is sample k
            pieces.append(self.head[1 : 1 - first][::-1])
        lo = max(first, 0) - self.buffer_start
        hi = min(last, self.samples) - self.buffer_start
        pieces.append(self.buffer[lo:hi])
        if last > self.samples:
            pieces.append(np.zeros(last - self.samples, dtype=np.float32))
        segment = torch.from_numpy(np.concatenate(pieces))
        spectrum = torch.stft(segment, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        log_mel = (self.filters.T @ spectrum.abs() ** 2).clamp(min=1e-10).log10()
        self.running_max = max(self.running_max, float(log_mel.max()))
        features = (torch.maximum(log_mel, torch.tensor(self.running_max - 8.0)) + 4.0) / 4.0
        self.frames = stop
        keep = max(0, self.hop * stop - half)  # the next frame's first sample
        self.buffer = self.buffer[keep - self.buffer_start :]
        self.buffer_start = keep
        return features.numpy()


class OmniSession:
    """One spoken user turn, prefilled while it is recorded, then answered with `stream()`.

    Args:
        model: an [`OmniForConditionalGeneration`] (or a model with `.thinker`) in eval mode.
        processor: its [`OmniProcessor`] (chat template, tokenizer, Whisper feature settings).
        system: the system prompt (default: the processor's official one).

    Example:

    ```python
    >>> session = OmniSession(model, processor)
    >>> for samples in microphone_chunks():  # 16 kHz float32 arrays, any size
    ...     session.append_audio(samples)
    >>> for event in session.stream(text="", speaker="Chelsie"):  # only the last chunk and the suffix remain
    ...     ...
    ```
    """

    def __init__(self, model, processor, system: str | None = None):
        self.model = model
        self.thinker = model.thinker
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.system = processor.default_system_prompt if system is None else system
        self.sampling_rate = processor.feature_extractor.sampling_rate
        n_window = self.thinker.config.audio_config.n_window
        # Encoder chunks of 2·n_window frames; two at a time when n_window is odd, so that the pooled pairs of the
        # encoder's output never straddle two calls.
        self.chunk_frames = 2 * n_window * (1 + n_window % 2)
        self.features = StreamingLogMel(processor.feature_extractor)
        self._pending = np.zeros((self.thinker.config.audio_config.num_mel_bins, 0), dtype=np.float32)
        self._feature_chunks: list[np.ndarray] = []
        self.cache = DynamicCache(config=self.thinker.config.text_config)
        self.input_ids = torch.zeros(1, 0, dtype=torch.long, device=self.thinker.device)
        self.track: list[tuple[torch.Tensor, torch.Tensor]] = []  # (inputs_embeds, last hidden) per prefill
        self.closed = False
        self.audio_frames = 0
        prefix, _ = self._template("")
        self._prefill_text(prefix)

    # ---------------------------------------------------------------- input
    def append_audio(self, samples: np.ndarray, sampling_rate: int | None = None) -> int:
        """Add recorded samples (16 kHz mono float32, any length); encode and prefill every complete 2 s chunk.

        Returns the number of audio tokens prefilled so far."""
        self._check_open()
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"append_audio expects {self.sampling_rate} Hz audio, got {sampling_rate} Hz: resample it first "
                "(e.g. librosa.resample or scipy.signal.resample_poly)"
            )
        samples = np.asarray(samples)
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.number):
            raise ValueError(
                f"append_audio expects a 1-D array of samples, got shape {samples.shape} ({samples.dtype})"
            )
        self._add_frames(self.features.push(samples))
        while self._pending.shape[1] >= self.chunk_frames:
            self._encode(self._pending[:, : self.chunk_frames])
            self._pending = self._pending[:, self.chunk_frames :]
        return int(audio_token_lengths(torch.tensor([self.audio_frames - self._pending.shape[1]])).item())

    @property
    def input_features(self) -> torch.Tensor:
        """`(1, mels, frames)` the features the session encoded so far (for inspection and tests)."""
        return torch.from_numpy(np.concatenate(self._feature_chunks, axis=1)).unsqueeze(0)

    def finish_input(self, text: str = "") -> dict:
        """End the turn and build the prompt. The last (partial) chunk is not prefilled here: its features go to the
        reply's first forward with the prompt suffix, so both cost one forward.

        Returns the full prompt's `input_ids` `(1, length)` and `position_ids` `(3, 1, length)`, the last chunk's
        `input_features` `(1, mels, frames)` and `feature_attention_mask`, and `audio_feature_lengths` (all frames).
        """
        self._check_open()
        if self.features.samples == 0:
            raise ValueError("The session has no audio: append_audio() before finishing the turn")
        self._add_frames(self.features.finish())
        self.closed = True
        last = self._pending
        self._feature_chunks.append(last)
        n_last = int(audio_token_lengths(torch.tensor([last.shape[1]])).item())
        device = self.thinker.device
        _, suffix = self._template(text)
        audio_ids = torch.full((1, n_last), self.thinker.config.audio_token_id, device=device)
        input_ids = torch.cat([self.input_ids, audio_ids, self._tokenize(suffix)], dim=1)
        return {
            "input_ids": input_ids,
            "position_ids": torch.arange(input_ids.shape[1], device=device).view(1, 1, -1).expand(3, 1, -1),
            "input_features": torch.from_numpy(last).unsqueeze(0).to(device),
            "feature_attention_mask": torch.ones(1, last.shape[1], dtype=torch.long, device=device),
            "audio_feature_lengths": torch.tensor([self.audio_frames], device=device),
        }

    # ---------------------------------------------------------------- reply
    def stream(
        self,
        text: str = "",
        speaker: str = "Chelsie",
        return_audio: bool | None = None,
        window=None,
        thinker_max_new_tokens: int = 1024,
        talker_max_new_tokens: int = 4096,
        generator=None,
        **kwargs,
    ):
        """End the turn (with optional `text` after the audio) and stream the reply: the events of
        `OmniForConditionalGeneration.stream`."""
        from ..models.modeling_omni import _split_kwargs

        prompt = self.finish_input(text)
        voice = self.model._voice(speaker, return_audio)
        thinker_kwargs, talker_kwargs, token2wav_kwargs = _split_kwargs(
            kwargs, thinker_max_new_tokens, talker_max_new_tokens
        )
        return stream_reply(
            self.model,
            prompt["input_ids"],
            None,
            {k: prompt[k] for k in ("position_ids", "input_features", "feature_attention_mask")}
            | {"cache": self.cache},
            thinker_kwargs,
            voice=voice,
            talker_kwargs=talker_kwargs,
            token2wav_kwargs=token2wav_kwargs,
            media_layout={"audio_feature_lengths": prompt["audio_feature_lengths"]},
            tokenizer=self.tokenizer,
            window=window,
            generator=generator,
            prompt_prefix=self._prefix_track(),
        )

    def close(self) -> None:
        """Free the cache; any later input raises."""
        self.closed = True
        self.cache = None
        self.track.clear()

    # ---------------------------------------------------------------- internals
    def _check_open(self):
        if self.closed:
            raise RuntimeError("This session's turn is over (finished or closed): start a new OmniSession")

    def _template(self, text: str) -> tuple[str, str]:
        """The prompt text before the audio placeholder (through `<|audio_bos|>`) and after it."""
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": self.system}]},
            {"role": "user", "content": [{"type": "audio", "audio": None}, {"type": "text", "text": text}]},
        ]
        prompt = self.processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False, add_default_system_prompt=False
        )
        audio = self.processor.tokenizer.convert_ids_to_tokens(self.thinker.config.audio_token_id)
        prefix, suffix = prompt.split(audio, 1)
        return prefix, suffix

    def _tokenize(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], dtype=torch.long, device=self.thinker.device)

    def _add_frames(self, frames: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, frames], axis=1)
        self.audio_frames += frames.shape[1]

    @torch.no_grad()
    def _encode(self, features: np.ndarray) -> None:
        """Encode one audio chunk `(mels, frames ≤ chunk)` and prefill its tokens."""
        self._feature_chunks.append(features)
        tensor = torch.from_numpy(features).to(self.thinker.device)
        tokens = self.thinker.audio_tower(tensor, feature_lens=torch.tensor([features.shape[1]])).last_hidden_state
        ids = torch.full((1, tokens.shape[0]), self.thinker.config.audio_token_id, device=self.thinker.device)
        self._prefill(ids, tokens.unsqueeze(0))

    def _prefill_text(self, text: str) -> None:
        ids = self._tokenize(text)
        self._prefill(ids, self.thinker.get_input_embeddings()(ids))

    @torch.no_grad()
    def _prefill(self, ids: torch.Tensor, embeds: torch.Tensor) -> None:
        """Append positions to the KV cache (TMRoPE ids of text and audio tokens run on one per token)."""
        start = self.input_ids.shape[1]
        positions = torch.arange(start, start + ids.shape[1], device=ids.device).view(1, 1, -1).expand(3, 1, -1)
        embeds = embeds.to(self.thinker.dtype)
        out = self.thinker.model(inputs_embeds=embeds, position_ids=positions, cache=self.cache, use_cache=True)
        self.cache = out.cache
        self.track.append((embeds, out.last_hidden_state))
        self.input_ids = torch.cat([self.input_ids, ids], dim=1)

    def _prefix_track(self) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = torch.cat([e for e, _ in self.track], dim=1)
        hidden = torch.cat([h for _, h in self.track], dim=1)
        return embeds, hidden


__all__ = ["AudioChunk", "OmniSession", "StreamStats", "StreamingLogMel", "TextDelta"]
