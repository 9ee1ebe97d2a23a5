"""Turn detection: silero-vad (`SileroVAD`, the default where its package is installed: `make_vad`) and a model-free
energy voice-activity detector as the fallback (resampling and pcm16 live in `omni_hf.processing.encoding`,
re-exported here).

`EnergyVAD` classifies 20 ms frames as speech when their RMS level is above a threshold, reports the start of speech
after `min_speech_ms` of speech frames and its end after `silence_duration_ms` of non-speech frames (the Realtime
API's `server_vad` parameters; `threshold` 0..1 maps to -60..-20 dBFS, 0.5 = -40 dBFS).
"""

from dataclasses import dataclass

import numpy as np

from ..processing.encoding import PCM16_RATE, StreamingResampler, float_to_pcm16, pcm16_to_float


@dataclass
class VADEvent:
    """`kind` "speech_started" or "speech_stopped", at `sample` (absolute index into the input stream)."""

    kind: str
    sample: int


class EnergyVAD:
    """Energy voice-activity detection on a mono float32 stream, frame by frame.

    Args:
        sampling_rate: rate of the pushed samples.
        threshold: 0..1, the speech level: a frame is speech above `-60 + 40 * threshold` dBFS.
        silence_duration_ms: non-speech time that ends speech (the turn).
        min_speech_ms: speech time that starts speech (filters clicks).
        frame_ms: analysis frame length.
    """

    def __init__(self, sampling_rate: int = PCM16_RATE, threshold: float = 0.5, silence_duration_ms: int = 500,
                 min_speech_ms: int = 60, frame_ms: int = 20):  # fmt: skip
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if silence_duration_ms <= 0 or min_speech_ms <= 0 or frame_ms <= 0:
            raise ValueError("silence_duration_ms, min_speech_ms and frame_ms must be positive")
        self.sampling_rate = sampling_rate
        self.frame = sampling_rate * frame_ms // 1000
        self.level = 10 ** ((-60.0 + 40.0 * threshold) / 20)  # RMS of a speech frame, full scale = 1
        self.start_frames = max(1, -(-min_speech_ms // frame_ms))
        self.stop_frames = max(1, -(-silence_duration_ms // frame_ms))
        self.buffer = np.zeros(0, dtype=np.float32)
        self.position = 0  # absolute index of buffer[0]
        self.speaking = False
        self.run = 0  # consecutive frames disagreeing with `speaking`

    def push(self, samples: np.ndarray) -> list[VADEvent]:
        """Classify the complete frames of `samples` (kept across calls); returns the speech starts/ends found."""
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, dtype=np.float32).reshape(-1)])
        events = []
        while self.buffer.size >= self.frame:
            frame, self.buffer = self.buffer[: self.frame], self.buffer[self.frame :]
            speech = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) > self.level
            self.position += self.frame
            self.run = 0 if speech == self.speaking else self.run + 1
            needed = self.stop_frames if self.speaking else self.start_frames
            if self.run >= needed:
                self.speaking = not self.speaking
                # speech starts where its first frame began; it stops where the silence began
                at = self.position - self.run * self.frame
                events.append(VADEvent("speech_started" if self.speaking else "speech_stopped", at))
                self.run = 0
        return events

    def reset(self) -> None:
        self.buffer = np.zeros(0, dtype=np.float32)
        self.speaking, self.run = False, 0


class SileroVAD:
    """silero-vad (its model ships in the `silero-vad` wheel; nothing is downloaded) with `EnergyVAD`'s interface:
    speech probability per 32 ms window at 16 kHz, speech above `threshold` (below `threshold - 0.15` is silence),
    started after `min_speech_ms`, stopped after `silence_duration_ms` of silence. Event samples are at the pushed
    rate."""

    def __init__(self, sampling_rate: int = 24000, threshold: float = 0.5, silence_duration_ms: int = 500,
                 min_speech_ms: int = 64):  # fmt: skip
        import torch
        from silero_vad import load_silero_vad

        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if silence_duration_ms <= 0 or min_speech_ms <= 0:
            raise ValueError("silence_duration_ms and min_speech_ms must be positive")
        self.torch = torch
        self.model = load_silero_vad()
        self.sampling_rate, self.threshold = sampling_rate, threshold
        self.resampler = StreamingResampler(sampling_rate, 16000) if sampling_rate != 16000 else None
        self.window = 512  # 32 ms at 16 kHz
        self.start_windows = max(1, -(-min_speech_ms // 32))
        self.stop_windows = max(1, -(-silence_duration_ms // 32))
        self.reset()

    def push(self, samples: np.ndarray) -> list[VADEvent]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        audio = self.resampler.push(samples) if self.resampler is not None else samples
        self.buffer = np.concatenate([self.buffer, audio])
        events = []
        while self.buffer.size >= self.window:
            window, self.buffer = self.buffer[: self.window], self.buffer[self.window :]
            with self.torch.no_grad():
                probability = float(self.model(self.torch.from_numpy(window.copy()), 16000))
            self.position += self.window
            speech = probability >= self.threshold if not self.speaking else probability >= self.threshold - 0.15
            self.run = 0 if speech == self.speaking else self.run + 1
            needed = self.stop_windows if self.speaking else self.start_windows
            if self.run >= needed:
                self.speaking = not self.speaking
                at16 = self.position - self.run * self.window
                events.append(VADEvent("speech_started" if self.speaking else "speech_stopped",
                                       at16 * self.sampling_rate // 16000))  # fmt: skip
                self.run = 0
        return events

    def reset(self) -> None:
        self.model.reset_states()
        self.buffer = np.zeros(0, dtype=np.float32)
        self.position, self.speaking, self.run = 0, False, 0


def make_vad(sampling_rate: int = 24000, threshold: float = 0.5, silence_duration_ms: int = 500):
    """`SileroVAD` when the `silero-vad` package is installed, else `EnergyVAD`."""
    try:
        return SileroVAD(sampling_rate, threshold, silence_duration_ms)
    except ImportError:
        return EnergyVAD(sampling_rate, threshold, silence_duration_ms)


__all__ = ["EnergyVAD", "SileroVAD", "StreamingResampler", "VADEvent", "float_to_pcm16", "make_vad", "pcm16_to_float"]
