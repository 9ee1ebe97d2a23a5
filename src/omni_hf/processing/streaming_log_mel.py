"""Whisper log-mel features computed while a 16 kHz stream arrives, and the 2 s chunker of live audio (chunked
prefill: `OmniSession`, `OmniConversation`, realtime)."""

import math

import numpy as np
import torch


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


def encoder_chunk_frames(n_window: int) -> int:
    """Mel frames per prefill chunk: the audio encoder attends within `2 * n_window` frames (2 s); two such chunks
    at a time when `n_window` is odd, so that the encoder's pooled pairs never straddle two calls."""
    return 2 * n_window * (1 + n_window % 2)


class AudioChunker:
    """The 2 s audio chunker of live input: 16 kHz samples in, complete encoder chunks of log-mel features out.

    Each chunk is final when it is returned (see `StreamingLogMel`), so it can be encoded and prefilled while the
    speaker goes on; `finish()` returns the last, shorter chunk. The chunks joined equal the features of the whole
    clip, whatever the packet sizes.

    Args:
        feature_extractor: the processor's `WhisperFeatureExtractor`.
        n_window: the audio encoder's `n_window` (`config.audio_config.n_window`).
    """

    def __init__(self, feature_extractor, n_window: int):
        self.mel = StreamingLogMel(feature_extractor)
        self.chunk_frames = encoder_chunk_frames(n_window)
        self.pending = np.zeros((self.mel.filters.shape[1], 0), dtype=np.float32)
        self.frames = 0  # mel frames produced so far (chunks returned + pending)

    @property
    def samples(self) -> int:
        return self.mel.samples

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add 16 kHz mono float32 samples `(n,)`; returns the chunks completed, each `(mels, chunk_frames)`."""
        return self._cut(self.mel.push(samples))

    def finish(self) -> np.ndarray:
        """The last chunk `(mels, <= chunk_frames)` (the end zero-padded to a whole frame); may have 0 frames."""
        chunks = self._cut(self.mel.finish())
        tail = np.concatenate([*chunks, self.pending], axis=1) if chunks else self.pending
        self.pending = self.pending[:, :0]
        return tail

    def _cut(self, frames: np.ndarray) -> list[np.ndarray]:
        self.frames += frames.shape[1]
        self.pending = np.concatenate([self.pending, frames], axis=1)
        chunks = []
        while self.pending.shape[1] >= self.chunk_frames:
            chunks.append(self.pending[:, : self.chunk_frames])
            self.pending = self.pending[:, self.chunk_frames :]
        return chunks


__all__ = ["AudioChunker", "StreamingLogMel", "encoder_chunk_frames"]
