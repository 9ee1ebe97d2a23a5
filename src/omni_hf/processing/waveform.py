"""A waveform that knows its sampling rate, for pipeline outputs.

transformers' `any-to-any` pipeline returns `{"generated_audio": array}` with no rate (its records are built from
the processor's `post_process_multimodal_output`, one value per reply). [`Waveform`] is that array, a plain
`numpy.ndarray` subclass, so code written for transformers' Qwen2.5-Omni keeps working, with `sampling_rate` set.
"""

import numpy as np

SPEECH_SAMPLING_RATE = 24000  # token2wav's output rate


class Waveform(np.ndarray):
    """`(samples,)` float32 audio with its `sampling_rate` (Hz); slices and copies keep the rate, arithmetic too."""

    sampling_rate: int

    def __new__(cls, samples, sampling_rate: int):
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, int) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive int (Hz), got {sampling_rate!r}")
        wave = np.asarray(samples).view(cls)
        wave.sampling_rate = sampling_rate
        return wave

    def __array_finalize__(self, source) -> None:
        self.sampling_rate = getattr(source, "sampling_rate", None)

    def __reduce__(self):  # pickling keeps the rate
        state = super().__reduce__()
        return state[0], state[1], (*state[2], self.sampling_rate)

    def __setstate__(self, state) -> None:
        *array_state, self.sampling_rate = state
        super().__setstate__(tuple(array_state))

    @property
    def duration(self) -> float:
        """Seconds of audio (the last axis at `sampling_rate`)."""
        return self.shape[-1] / self.sampling_rate


__all__ = ["SPEECH_SAMPLING_RATE", "Waveform"]
