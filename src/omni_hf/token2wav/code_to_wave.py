"""The code-to-wave stage: what the rest of omni_hf asks of whatever turns the Talker's speech codes into a waveform.

`generate`, `stream`, the conversations and the server call only these methods on `model.token2wav`, so a stage with
other numerics or other conditioning (a few-step DiT, a causal Code2Wav that needs no reference audio) is one class
and one assignment (`model.token2wav = stage`), with nothing to change in `omni/`, `serving/` or `voices/`.

A stage:
- `speaker_conditioning(speaker)`: the stage's own conditioning object for a `voices.Speaker` (opaque to callers);
- `decode(codes, conditioning, generator=None, **options)`: codes `(n,)` → float32 waveform `(samples,)`;
- `open_stream(conditioning, window=None, generator=None, stage_context=None, batch_key=None, **options)`: a
  [`CodeToWaveStream`] for one utterance;
- `decode_streams(streams, ...)`: advance several of its streams at once (batched where the stage can batch);
- `sampling_rate`, `device`.

[`OmniToken2WavPipeline`] (DiT + BigVGAN) is the paper's stage. [`CodeToWave`] gives the defaults a simple stage
needs (`decode` through a stream, `decode_streams` one stream at a time).
"""

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch

SAMPLING_RATE = 24000  # the waveform rate of Qwen2.5-Omni's speech output


class CodeToWaveStream:
    """One utterance decoded as its codes arrive.

    `add(codes)` appends speech codes `(n,)`, `end()` says no more will come, `decode_ready()` returns the waveform
    chunks (float32 `(samples,)`) that are final now (after `end()`, all that is left). `push` and `finish` are the
    two in one. A stream is `done` once everything it will produce was returned (or it was cancelled).
    """

    cancelled: bool = False
    batch_key = None  # streams of one stage with equal keys may share a batch in `decode_streams`

    def add(self, codes: torch.Tensor) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError

    def decode_ready(self) -> Iterable[torch.Tensor]:
        raise NotImplementedError

    @property
    def done(self) -> bool:
        raise NotImplementedError

    def push(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """Add codes `(n,)`; return the chunks now final."""
        self.add(codes)
        return list(self.decode_ready())

    def finish(self) -> Iterable[torch.Tensor]:
        """No more codes: the chunks that are left."""
        self.end()
        return self.decode_ready()

    def close(self) -> None:
        """Stop: later calls decode nothing more."""
        self.cancelled = True


class CodeToWave:
    """Defaults of the code-to-wave interface (see the module docstring); subclasses define `speaker_conditioning`,
    `open_stream`, `sampling_rate` and `device`."""

    sampling_rate: int = SAMPLING_RATE

    def speaker_conditioning(self, speaker):
        raise NotImplementedError

    def open_stream(
        self,
        conditioning,
        window=None,
        generator: torch.Generator | None = None,
        stage_context: Callable[[str], AbstractContextManager] | None = None,
        batch_key=None,
        **options,
    ) -> CodeToWaveStream:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor, conditioning, generator: torch.Generator | None = None, **options):
        """Speech codes `(n,)` → float32 waveform `(samples,)` (empty for no codes)."""
        if codes.numel() == 0:
            return torch.zeros(0)
        stream = self.open_stream(conditioning, generator=generator, **options)
        stream.add(codes)
        chunks = list(stream.finish())
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def decode_streams(self, streams: list[CodeToWaveStream], **batching) -> list[list[torch.Tensor]]:
        """The chunks now final of each stream (in order). This default decodes them one by one."""
        return [list(stream.decode_ready()) for stream in streams]


def is_code_to_wave(stage) -> bool:
    """Whether `stage` offers the code-to-wave methods (duck-typed: a wrapped pipeline forwards them)."""
    return all(callable(getattr(stage, name, None)) for name in ("speaker_conditioning", "open_stream", "decode"))


__all__ = ["SAMPLING_RATE", "CodeToWave", "CodeToWaveStream", "is_code_to_wave"]
