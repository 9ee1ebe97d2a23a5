"""What transformers' pipelines expect from a generating model, for [`OmniForConditionalGeneration`].

- `any-to-any` passes `generation_mode="audio"` (speech out) or nothing / `"text"` (text out) to `generate` and reads
  `(sequences, waveforms)` back through the processor's `post_process_multimodal_output`.
- `text-to-audio` asks for `return_dict_in_generate=True` and reads the waveform from `output["audio"]`.
`pipeline_generate_arguments` wraps `generate` to map these onto `return_audio` and the output, nothing else.
"""

import functools
from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class OmniGenerateOutput(ModelOutput):
    """`sequences` `(batch, prompt + reply)`; `audio`: a `(samples,)` 24 kHz waveform, or a list for a batch."""

    sequences: torch.LongTensor | None = None
    audio: torch.Tensor | list[torch.Tensor] | None = None


def pipeline_generate_arguments(generate):
    """Decorator for the full model's `generate`: `generation_mode` ("text" / "audio") sets `return_audio`;
    `return_dict_in_generate=True` returns an [`OmniGenerateOutput`] (the Thinker's own dict when text only)."""

    @functools.wraps(generate)
    def wrapper(self, *args, generation_mode: str | None = None, return_dict_in_generate: bool = False, **kwargs):
        if generation_mode is not None:
            if generation_mode not in ("text", "audio"):
                raise ValueError(f"generation_mode must be 'text' or 'audio' for this model, got {generation_mode!r}")
            kwargs["return_audio"] = generation_mode == "audio"
        if return_dict_in_generate:
            kwargs["return_dict_in_generate"] = True
        output = generate(self, *args, **kwargs)
        if not isinstance(output, tuple):
            return output
        sequences, audio = output
        if return_dict_in_generate:
            return OmniGenerateOutput(sequences=sequences, audio=audio)
        return sequences, audio

    return wrapper


__all__ = ["OmniGenerateOutput", "pipeline_generate_arguments"]
