"""Speech tokenizer: 24 kHz audio → Qwen2.5-Omni speech codes (ids in `[0, 8193)`, 50 per second).

Qwen's codec encoder is not public; only the decoder (token2wav: codes → DiT mel → BigVGAN waveform) is. This model
is trained to invert that decoder (`omni_hf.training.speech_tokenizer_training`): it reads the 80-bin, 100 frames/s log-mel
of `omni_hf.token2wav.mel` and predicts one code per 2 frames (20 ms):

    mel (batch, frames, 80) → conv (k=3) → strided conv (2 frames → 1 position) → + sinusoidal positions
      → bidirectional Whisper encoder layers → LayerNorm → linear head → logits (batch, frames // 2, num_codes)

Example:

```python
>>> tokenizer = OmniSpeechTokenizer.from_pretrained("speech-tokenizer")
>>> codes = tokenizer.encode(waveform, sampling_rate=16000)  # (len(waveform) * 24000 / 16000 // 480,)
>>> audio = model.token2wav(codes[None], reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding).audios
```
"""

from dataclasses import dataclass

import numpy as np
import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import PreTrainedConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import ModelOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

from ..common.modeling_utils import OmniPreTrainedModel, sinusoid_table
from ..token2wav.mel import MelSettings, log_mel_spectrogram, resample


@strict
class OmniSpeechTokenizerConfig(PreTrainedConfig):
    r"""
    Configuration of [`OmniSpeechTokenizer`]. Defaults are a ~20M-parameter model meant for a GPU run.

    Args:
        num_mels (`int`, *optional*, defaults to 80): Mel bins of the input (token2wav's front end).
        hidden_size (`int`, *optional*, defaults to 512): Encoder width.
        num_hidden_layers (`int`, *optional*, defaults to 6): Bidirectional encoder layers.
        num_attention_heads (`int`, *optional*, defaults to 8): Attention heads.
        intermediate_size (`int`, *optional*, defaults to 2048): Feed-forward width.
        num_codes (`int`, *optional*, defaults to 8193): Speech code vocabulary (token2wav's `num_embeds`).
        frames_per_code (`int`, *optional*, defaults to 2): Mel frames per code (100 frames/s, 50 codes/s).
        max_position_embeddings (`int`, *optional*, defaults to 1500): Longest input in codes (30 s);
            `encode` cuts longer audio into windows of this many codes.
        mel_mean / mel_std (`float`, *optional*, defaults to -4.0 / 4.0): Fixed affine normalisation of the log-mel.
        dropout / attention_dropout / activation_dropout (`float`, *optional*, defaults to 0.0): Training dropout.
        activation_function (`str`, *optional*, defaults to `"gelu"`): Feed-forward activation.
        initializer_range (`float`, *optional*, defaults to 0.02): Normal initialiser standard deviation.
    """

    model_type = "omni_hf_speech_tokenizer"
    attribute_map = {
        "d_model": "hidden_size",
        "encoder_attention_heads": "num_attention_heads",
        "encoder_ffn_dim": "intermediate_size",
        "encoder_layers": "num_hidden_layers",
    }

    num_mels: int = 80
    hidden_size: int = 512
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int = 2048
    num_codes: int = 8193
    frames_per_code: int = 2
    max_position_embeddings: int = 1500
    mel_mean: float | int = -4.0
    mel_std: float | int = 4.0
    dropout: float | int = 0.0
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    activation_function: str = "gelu"
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        if self.frames_per_code < 1 or self.num_codes < 1 or self.max_position_embeddings < 1:
            raise ValueError("frames_per_code, num_codes and max_position_embeddings must be positive")
        super().__post_init__(**kwargs)


@dataclass
class OmniSpeechTokenizerOutput(ModelOutput):
    """
    Args:
        loss: scalar cross-entropy over the valid, labelled positions (when `labels` are given).
        logits: `(batch, frames // frames_per_code, num_codes)` one distribution per 20 ms.
        code_mask: `(batch, frames // frames_per_code)` 1 where the position's mel frames are all valid.
        last_hidden_state: `(batch, frames // frames_per_code, hidden_size)`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    code_mask: torch.LongTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class OmniSpeechTokenizer(OmniPreTrainedModel):
    """Audio → speech codes (see the module docstring). `forward` takes mels; `encode` takes a waveform."""

    config: OmniSpeechTokenizerConfig
    config_class = OmniSpeechTokenizerConfig
    main_input_name = "mel"
    base_model_prefix = "speech_tokenizer"
    _no_split_modules = ["WhisperEncoderLayer"]

    def __init__(self, config: OmniSpeechTokenizerConfig):
        super().__init__(config)
        dim, stride = config.hidden_size, config.frames_per_code
        self.conv1 = nn.Conv1d(config.num_mels, dim, kernel_size=3, padding=1)
        # Sees `stride + 2` frames around each code's own `stride` frames; output length is exactly frames // stride.
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=stride + 2, stride=stride, padding=1)
        self.register_buffer(
            "positional_embedding", torch.empty(config.max_position_embeddings, dim), persistent=False
        )
        self.layers = nn.ModuleList([WhisperEncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.layer_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config.num_codes)
        self.gradient_checkpointing = False
        self.post_init()

    def constant_buffers(self) -> dict[str, torch.Tensor]:
        return {"positional_embedding": sinusoid_table(*self.positional_embedding.shape)}

    def get_input_embeddings(self) -> nn.Module:
        return self.conv1

    def set_input_embeddings(self, value: nn.Module):
        self.conv1 = value

    def _check_mel(self, mel: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        config = self.config
        if mel.dim() != 3 or mel.shape[-1] != config.num_mels:
            raise ValueError(f"mel must be (batch, frames, {config.num_mels}), got shape {tuple(mel.shape)}")
        if mel.shape[1] < config.frames_per_code:
            raise ValueError(
                f"mel has {mel.shape[1]} frames; at least frames_per_code={config.frames_per_code} are needed"
            )
        positions = mel.shape[1] // config.frames_per_code
        if positions > config.max_position_embeddings:
            raise ValueError(
                f"mel has {mel.shape[1]} frames = {positions} codes, more than max_position_embeddings="
                f"{config.max_position_embeddings}; cut it into windows (encode() does)"
            )
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(mel.shape[:2]):
            raise ValueError(
                f"attention_mask must be (batch, frames) = {tuple(mel.shape[:2])}, got {tuple(attention_mask.shape)}"
            )

    def forward(
        self,
        mel: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> OmniSpeechTokenizerOutput:
        """
        Args:
            mel: `(batch, frames, num_mels)` natural-log mel at 100 frames/s (`omni_hf.token2wav.mel`).
            attention_mask: `(batch, frames)` 1 for real frames, 0 for padding (default: all real).
            labels: `(batch, codes)` target codes, `-100` ignored; `codes` may be at most `frames // 2` (shorter
                label rows are treated as padded with -100).

        Returns:
            [`OmniSpeechTokenizerOutput`] with `logits` `(batch, frames // 2, num_codes)` and `loss` with labels.
        """
        self._check_mel(mel, attention_mask)
        config = self.config
        stride = config.frames_per_code
        positions = mel.shape[1] // stride
        if attention_mask is None:
            attention_mask = torch.ones(mel.shape[:2], dtype=torch.long, device=mel.device)
        frame_mask = attention_mask.bool()
        code_mask = frame_mask[:, : positions * stride].reshape(mel.shape[0], positions, stride).all(-1)

        x = (mel.to(self.conv1.weight.dtype) - config.mel_mean) / config.mel_std
        x = x * frame_mask.unsqueeze(-1)
        x = nn.functional.gelu(self.conv1(x.transpose(1, 2))) * frame_mask.unsqueeze(1)
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)  # (batch, positions, dim)
        x = x + self.positional_embedding[:positions].to(x.dtype)
        mask = create_bidirectional_mask(config=config, inputs_embeds=x, attention_mask=code_mask)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                x = self._gradient_checkpointing_func(layer.__call__, x, mask)
            else:
                x = layer(x, attention_mask=mask, **kwargs)
        hidden = self.layer_norm(x)
        logits = self.head(hidden)

        loss = None
        if labels is not None:
            if labels.dim() != 2 or labels.shape[0] != mel.shape[0] or labels.shape[1] > positions:
                raise ValueError(
                    f"labels must be (batch, codes) with batch={mel.shape[0]} and codes <= frames // "
                    f"{stride} = {positions}, got shape {tuple(labels.shape)}"
                )
            targets = torch.full(code_mask.shape, -100, dtype=torch.long, device=logits.device)
            targets[:, : labels.shape[1]] = labels.to(logits.device)
            targets = targets.masked_fill(~code_mask, -100)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return OmniSpeechTokenizerOutput(
            loss=loss, logits=logits, code_mask=code_mask.long(), last_hidden_state=hidden
        )

    @torch.no_grad()
    def encode(self, waveform, sampling_rate: int) -> torch.LongTensor:
        """A mono waveform `(samples,)` (numpy or torch) at `sampling_rate` → codes `(samples * 24000 / rate // 480,)`.

        Resamples to 24 kHz, computes the token2wav log-mel and takes the argmax code per 20 ms; audio longer than
        `max_position_embeddings` codes is encoded in consecutive windows.
        """
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().float().numpy()
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"waveform must be mono (samples,), got shape {waveform.shape}")
        if waveform.size == 0:
            raise ValueError("waveform is empty")
        if not np.isfinite(waveform).all():
            raise ValueError("waveform contains NaN or inf samples")
        if not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive int, got {sampling_rate!r}")
        settings = MelSettings()
        audio = resample(waveform, int(sampling_rate), settings.sampling_rate)
        samples_per_code = settings.hop_length * self.config.frames_per_code
        if audio.size < samples_per_code:
            raise ValueError(
                f"waveform is too short: {waveform.size} samples at {sampling_rate} Hz is under one code "
                f"({samples_per_code} samples at {settings.sampling_rate} Hz)"
            )
        mel = log_mel_spectrogram(torch.from_numpy(audio), settings).to(self.device)  # (1, frames, 80)
        num_codes = mel.shape[1] // self.config.frames_per_code
        mel = mel[:, : num_codes * self.config.frames_per_code]
        window = self.config.max_position_embeddings * self.config.frames_per_code
        codes = [self(mel[:, start : start + window]).logits.argmax(-1)[0] for start in range(0, mel.shape[1], window)]
        return torch.cat(codes).cpu()


__all__ = ["OmniSpeechTokenizer", "OmniSpeechTokenizerConfig", "OmniSpeechTokenizerOutput"]
