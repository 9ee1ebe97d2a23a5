"""Audio in and out of the API: the server's names for `omni_hf.processing.encoding` (pcm16 / WAV bytes, base64),
where the one pcm16 convention (full scale 32768) is defined."""

from ..processing.content_parts import decode_audio_data
from ..processing.encoding import (
    OUTPUT_FORMATS,
    PCM16_RATE,
    b64decode_strict,
    encode_audio,
    float_to_pcm16,
    pcm16_to_float,
    wav_bytes,
)

OUTPUT_RATE = PCM16_RATE
pcm16_bytes = float_to_pcm16  # float32 `(samples,)` in [-1, 1] → little-endian 16-bit PCM bytes
decode_audio_upload = decode_audio_data  # an `input_audio` upload → (mono float32, rate), header-checked

__all__ = [
    "OUTPUT_FORMATS",
    "OUTPUT_RATE",
    "b64decode_strict",
    "decode_audio_upload",
    "encode_audio",
    "pcm16_bytes",
    "pcm16_to_float",
    "wav_bytes",
]
