"""Qwen2.5-Omni token2wav DiT: speech codes + speaker → mel velocity field for flow matching.

Each codec id becomes `repeats` mel frames (50 codes/s → 100 frames/s). The network input is a linear map of
[noisy mel, ECAPA speaker features of a reference mel, code embedding, x-vector], followed by DiT blocks with
adaptive layer norm on the flow time and attention restricted to blocks of `block_size` frames (look-back layers
also see the previous block, look-ahead layers the next one).

Differences from transformers' `Qwen2_5OmniToken2WavDiTModel` (same weights, same numbers up to float rounding):

* attention is computed per block over the gathered [previous, own, next] keys, so its cost and memory are
  linear in the length, instead of a dense N×N masked attention;
* everything that does not change across ODE steps (code embeddings, speaker encoder, the conditioning part of
  the input projection, rotary tables) is computed once per sampling in `prepare_conditioning`;
* the ODE solver is not part of the model (see `scheduling_flow_match.OmniFlowMatchScheduler`).

Example:

```python
>>> import torch
>>> from omni_hf.testing.tiny import tiny_token2wav_config_dict
>>> from omni_hf.token2wav.modeling_dit import OmniDiTModel
>>> model = OmniDiTModel(**tiny_token2wav_config_dict()["dit_config"]).eval()
>>> codes = torch.randint(0, 8192, (1, 50))
>>> cond = model.prepare_conditioning(codes, torch.randn(1, 300, 80), torch.randn(1, 24))
>>> x = torch.randn(1, 100, 80)
>>> model(x, 0.5, cond).sample.shape
torch.Size([1, 100, 80])

```
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .speaker_encoder import SpeakerEncoder

# ---------------------------------------------------------------------------------------------------------------
# Outputs and conditioning
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class OmniDiTOutput(BaseOutput):
    """Output of `OmniDiTModel.forward`.

    Args:
        sample (`torch.Tensor` of shape `(batch, frames, mel_dim)`): predicted velocity `d x / d t` (guided when the
            conditioning was prepared with `guidance=True`).
    """

    sample: torch.Tensor


@dataclass
class DiTConditioning:
    """Step-independent inputs of the DiT, computed once per sampling by `OmniDiTModel.prepare_conditioning`.

    With guidance, every per-frame tensor holds `2 * batch` rows: the conditional half first, then the
    unconditional half (code 0, zero reference mel, zero x-vector), as in the reference's classifier-free guidance.

    Args:
        code_embeds (`torch.Tensor`, `(rows, frames, emb_dim)`): codec embeddings repeated `repeats` times.
        speaker_features (`torch.Tensor`, `(rows, enc_dim)`): speaker-encoder output of the reference mel.
        xvector (`torch.Tensor`, `(rows, enc_emb_dim)`): the speaker x-vector (`cond` of the official speakers).
        condition_hidden (`torch.Tensor`, `(rows, frames, hidden_size)`): the conditioning part of the input
            projection (bias included); the noisy mel's part is added at every step.
        layout (`BlockAttentionLayout`): block geometry, key masks and rotary tables of the `frames` positions.
        batch_size (`int`): number of utterances (rows of the sample).
        guidance (`bool`): whether the unconditional half is present.
    """

    code_embeds: torch.Tensor
    speaker_features: torch.Tensor
    xvector: torch.Tensor
    condition_hidden: torch.Tensor
    layout: "BlockAttentionLayout"
    batch_size: int
    guidance: bool

    @property
    def num_frames(self) -> int:
        return self.condition_hidden.shape[1]


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


class TimestepEmbedding(nn.Module):
    """Flow time `t ∈ [0, 1]` `(batch,)` → `(batch, dim)`: sinusoids of `1000 t` (256 channels) then a SiLU MLP."""

    def __init__(self, dim: int, frequency_dim: int = 256, scale: float = 1000.0):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.scale = scale
        self.time_mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        exponent = torch.arange(half, device=timestep.device).float() * (-math.log(10000) / (half - 1))
        angles = self.scale * timestep.float().unsqueeze(1) * torch.exp(exponent).unsqueeze(0)
        frequencies = torch.cat([angles.sin(), angles.cos()], dim=-1).to(timestep.dtype)
        return self.time_mlp(frequencies)


class CodecEmbedding(nn.Module):
    """Codec ids `(batch, codes)` → `(batch, codes * repeats, emb_dim)` (each code spans `repeats` frames)."""

    def __init__(self, num_embeds: int, emb_dim: int, repeats: int):
        super().__init__()
        self.repeats = repeats
        self.codec_embed = nn.Embedding(num_embeds + 1, emb_dim)  # the official table has one spare row

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codec_embed(codes).repeat_interleave(self.repeats, dim=1)


class InputEmbedding(nn.Module):
    """Linear map of [noisy mel ‖ speaker features ‖ code embedding ‖ x-vector] (official order) to the width.

    The map is split: `condition(...)` projects the step-independent part once, `forward` adds the mel's part.
    """

    def __init__(self, mel_dim: int, enc_dim: int, emb_dim: int, enc_emb_dim: int, hidden_size: int, spk_encoder):
        super().__init__()
        self.mel_dim = mel_dim
        self.proj = nn.Linear(mel_dim + enc_dim + emb_dim + enc_emb_dim, hidden_size)
        self.spk_encoder = spk_encoder

    def condition(self, speaker_features, code_embeds, xvector) -> torch.Tensor:
        """`(rows, enc_dim)`, `(rows, frames, emb_dim)`, `(rows, enc_emb_dim)` → `(rows, frames, hidden)`."""
        frames = code_embeds.shape[1]
        features = torch.cat(
            [
                speaker_features.unsqueeze(1).expand(-1, frames, -1),
                code_embeds,
                xvector.unsqueeze(1).expand(-1, frames, -1),
            ],
            dim=-1,
        )
        return F.linear(features, self.proj.weight[:, self.mel_dim :], self.proj.bias)

    def forward(self, sample: torch.Tensor, condition_hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(sample, self.proj.weight[:, : self.mel_dim]) + condition_hidden


class AdaLayerNormZero(nn.Module):
    """Time-modulated LayerNorm of a DiT block; returns the normed input and the five other modulations."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim * 6)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, hidden_states: torch.Tensor, time_embedding: torch.Tensor):
        shift, scale, gate, shift_ff, scale_ff, gate_ff = self.linear(F.silu(time_embedding)).unsqueeze(1).chunk(6, -1)
        return self.norm(hidden_states) * (1 + scale) + shift, gate, shift_ff, scale_ff, gate_ff


class AdaLayerNormFinal(nn.Module):
    """Time-modulated LayerNorm before the output projection (modulation order: scale, shift)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim * 2)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, hidden_states: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(time_embedding)).unsqueeze(1).chunk(2, -1)
        return self.norm(hidden_states) * (1 + scale) + shift


class FeedForward(nn.Module):
    """`Linear → GELU(tanh) → Dropout → Linear` (official names `ff.0`, `ff.3`)."""

    def __init__(self, dim: int, mult: float, dropout: float):
        super().__init__()
        inner = int(dim * mult)
        self.ff = nn.Sequential(
            nn.Linear(dim, inner), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(inner, dim)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.ff(hidden_states)


def rotary_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of the rotary angles at `positions` `(length,)`: two `(length, head_dim // 2)` tensors."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=positions.device) / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def rotate_first_head_(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply interleaved-pair RoPE to head 0 only (in place), leaving its channels in (even ‖ odd) order.

    `states`: `(batch, frames, heads, head_dim)`, a fresh projection output; the official checkpoint was trained
    with rotary on the first head only. Query and key are reordered the same way, so their dot products are those
    of interleaved RoPE.
    """
    head = states[:, :, 0]
    even, odd = head[..., 0::2], head[..., 1::2]
    states[:, :, 0] = torch.cat([even * cos - odd * sin, odd * cos + even * sin], dim=-1)
    return states


class BlockAttentionLayout:
    """Block geometry of a `num_frames` mel, shared by all layers and all ODE steps.

    Frames are padded with one empty block in front and with the rest of the last block plus one empty block at
    the end: `(blocks + 2) * block_size` rows. The keys a query block sees are then one contiguous window of
    that padded sequence (`[previous?, own, next?]`), taken as overlapping strided views (no N×N tensor, no copies
    of the keys); missing neighbours and padding are masked. Cost and memory are `O(frames * window * block_size)`.

    Args:
        num_frames (`int`): mel frames.
        block_size (`int`): frames per block.
        head_dim (`int`), rope_theta (`float`): rotary settings (positions of padding rows are never used).
    """

    def __init__(self, num_frames: int, block_size: int, head_dim: int, rope_theta: float, device=None, dtype=None):
        self.num_frames = num_frames
        self.block_size = block_size
        self.num_blocks = -(-num_frames // block_size)
        self.padded_frames = (self.num_blocks + 2) * block_size
        positions = torch.arange(-block_size, self.padded_frames - block_size, device=device)
        self.valid = (positions >= 0) & (positions < num_frames)
        cos, sin = rotary_tables(positions, head_dim, rope_theta)
        self.rotary = (cos.to(dtype), sin.to(dtype))  # (padded_frames, head_dim // 2)
        self._masks = {}

    def pad(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(batch, frames, channels)` → `(batch, padded_frames, channels)` (zero rows around)."""
        tail = self.padded_frames - self.block_size - self.num_frames
        return F.pad(hidden_states, (0, 0, self.block_size, tail))

    def _window(self, look_back: bool, look_ahead: bool) -> tuple[int, int]:
        width = (1 + look_back + look_ahead) * self.block_size
        return (0 if look_back else self.block_size), width

    def queries(self, states: torch.Tensor) -> torch.Tensor:
        """Padded `(batch, heads, padded_frames, d)` → own blocks `(batch, heads, blocks, block_size, d)`."""
        own = states[:, :, self.block_size : (self.num_blocks + 1) * self.block_size]
        return own.unflatten(2, (self.num_blocks, self.block_size))

    def windows(self, states: torch.Tensor, look_back: bool, look_ahead: bool) -> torch.Tensor:
        """Padded `(batch, heads, padded_frames, d)` → key windows `(batch, heads, blocks, width, d)` (a view)."""
        start, width = self._window(look_back, look_ahead)
        span = states[:, :, start : start + (self.num_blocks - 1) * self.block_size + width]
        return span.unfold(2, width, self.block_size).transpose(-1, -2)

    def mask(self, look_back: bool, look_ahead: bool) -> torch.Tensor:
        """Boolean key mask `(blocks, 1, width)`, True where a key is a real frame."""
        key = (look_back, look_ahead)
        if key not in self._masks:
            start, width = self._window(look_back, look_ahead)
            span = self.valid[start : start + (self.num_blocks - 1) * self.block_size + width]
            self._masks[key] = span.unfold(0, width, self.block_size).unsqueeze(1)
        return self._masks[key]

    def unpad(self, blocks: torch.Tensor) -> torch.Tensor:
        """`(batch, heads, blocks, block_size, d)` → `(batch, heads, frames, d)`."""
        return blocks.flatten(2, 3)[:, :, : self.num_frames]


class BlockAttention(nn.Module):
    """Multi-head attention within blocks of frames (official names `to_q, to_k, to_v, to_out.0`)."""

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        inner = num_heads * head_dim
        self.to_q = nn.Linear(hidden_size, inner)
        self.to_k = nn.Linear(hidden_size, inner)
        self.to_v = nn.Linear(hidden_size, inner)
        self.to_out = nn.Sequential(nn.Linear(inner, hidden_size), nn.Dropout(dropout))

    def forward(self, hidden_states, layout: BlockAttentionLayout, look_back: bool, look_ahead: bool):
        """`(batch, frames, hidden)` → `(batch, frames, hidden)`."""
        padded = layout.pad(hidden_states)

        def heads(states):  # (b, padded, h*d) -> (b, padded, h, d)
            return states.unflatten(-1, (self.num_heads, self.head_dim))

        query = rotate_first_head_(heads(self.to_q(padded)), *layout.rotary).transpose(1, 2)
        key = rotate_first_head_(heads(self.to_k(padded)), *layout.rotary).transpose(1, 2)
        value = heads(self.to_v(padded)).transpose(1, 2)
        attended = F.scaled_dot_product_attention(
            layout.queries(query),
            layout.windows(key, look_back, look_ahead),
            layout.windows(value, look_back, look_ahead),
            attn_mask=layout.mask(look_back, look_ahead),
        )
        return self.to_out(layout.unpad(attended).transpose(1, 2).flatten(2))


class DiTBlock(nn.Module):
    """AdaLN-zero transformer block: gated block attention and gated feed-forward, both time-modulated."""

    def __init__(self, hidden_size, num_heads, head_dim, ff_mult, dropout, look_back: bool, look_ahead: bool):
        super().__init__()
        self.look_back = look_back
        self.look_ahead = look_ahead
        self.attn_norm = AdaLayerNormZero(hidden_size)
        self.attn = BlockAttention(hidden_size, num_heads, head_dim, dropout)
        self.ff_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(hidden_size, ff_mult, dropout)

    def forward(self, hidden_states, time_embedding, layout):
        normed, gate, shift_ff, scale_ff, gate_ff = self.attn_norm(hidden_states, time_embedding)
        hidden_states = hidden_states + gate * self.attn(normed, layout, self.look_back, self.look_ahead)
        normed = self.ff_norm(hidden_states) * (1 + scale_ff) + shift_ff
        return hidden_states + gate_ff * self.ff(normed)


# ---------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------


class OmniDiTModel(ModelMixin, ConfigMixin, PeftAdapterMixin):
    r"""Qwen2.5-Omni token2wav DiT: predicts the flow-matching velocity of a mel spectrogram given speech codes.

    Parameter names equal the official checkpoint's `token2wav.code2wav_dit_model.*` suffixes, so the state dict of
    transformers' `Qwen2_5OmniToken2WavDiTModel` loads with `strict=True`.

    Args:
        hidden_size (`int`, *optional*, defaults to 1024): width of the transformer.
        num_hidden_layers (`int`, *optional*, defaults to 22): number of DiT blocks.
        num_attention_heads (`int`, *optional*, defaults to 16): attention heads per block.
        ff_mult (`float`, *optional*, defaults to 2): feed-forward width as a multiple of `hidden_size`.
        emb_dim (`int`, *optional*, defaults to 512): width of the codec embedding.
        head_dim (`int`, *optional*, defaults to 64): width of one attention head.
        rope_theta (`float`, *optional*, defaults to 10000.0): rotary base (rotary acts on head 0 only).
        max_position_embeddings (`int`, *optional*, defaults to 32768): longest mel (frames) accepted.
        block_size (`int`, *optional*, defaults to 24): frames per attention block.
        look_ahead_layers (`Sequence[int]`, *optional*, defaults to `(10,)`): layers that also attend to the next
            block.
        look_backward_layers (`Sequence[int]`, *optional*, defaults to `(0, 20)`): layers that also attend to the
            previous block.
        repeats (`int`, *optional*, defaults to 2): mel frames per codec id.
        num_embeds (`int`, *optional*, defaults to 8193): number of codec ids (valid codes are `0..num_embeds-1`).
        mel_dim (`int`, *optional*, defaults to 80): mel bins.
        dropout (`float`, *optional*, defaults to 0.1): dropout after attention and inside the feed-forward
            (training only).
        enc_emb_dim (`int`, *optional*, defaults to 192): width of the speaker x-vector (`cond`).
        enc_dim (`int`, *optional*, defaults to 128): output width of the ECAPA speaker encoder.
        enc_channels (`Sequence[int]`, *optional*, defaults to `(256, 256, 256, 256, 768)`): ECAPA widths (first
            TDNN, SE-Res2Net blocks, aggregation = sum of the SE-Res2Net widths).
        enc_kernel_sizes (`Sequence[int]`, *optional*, defaults to `(5, 3, 3, 3, 1)`): ECAPA kernel sizes.
        enc_dilations (`Sequence[int]`, *optional*, defaults to `(1, 2, 3, 4, 1)`): ECAPA dilations.
        enc_attention_channels (`int`, *optional*, defaults to 64): bottleneck of the ECAPA attentive pooling.
        enc_res2net_scale (`int`, *optional*, defaults to 2): Res2Net groups in the ECAPA blocks.
        enc_se_channels (`int`, *optional*, defaults to 64): squeeze-excitation bottleneck in the ECAPA blocks.
        rope_parameters (`dict`, *optional*): official-format rope settings; only `rope_theta` is read (and must be
            the default rope type). Accepted so that official `dit_config` dicts load unchanged.
        model_type (`str`, *optional*): ignored (official config key).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["DiTBlock"]
    # Every top-level part: a pipeline load with `torch_dtype=`/`dtype=` keeps token2wav float32 (the official policy).
    _keep_in_fp32_modules = ["input_embed", "norm_out", "proj_out", "text_embed", "time_embed", "transformer_blocks"]

    @register_to_config
    def __init__(
        self,
        hidden_size: int = 1024,
        num_hidden_layers: int = 22,
        num_attention_heads: int = 16,
        ff_mult: float = 2,
        emb_dim: int = 512,
        head_dim: int = 64,
        rope_theta: float = 10000.0,
        max_position_embeddings: int = 32768,
        block_size: int = 24,
        look_ahead_layers: Sequence[int] = (10,),
        look_backward_layers: Sequence[int] = (0, 20),
        repeats: int = 2,
        num_embeds: int = 8193,
        mel_dim: int = 80,
        dropout: float = 0.1,
        enc_emb_dim: int = 192,
        enc_dim: int = 128,
        enc_channels: Sequence[int] = (256, 256, 256, 256, 768),
        enc_kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        enc_dilations: Sequence[int] = (1, 2, 3, 4, 1),
        enc_attention_channels: int = 64,
        enc_res2net_scale: int = 2,
        enc_se_channels: int = 64,
        rope_parameters: dict | None = None,
        model_type: str | None = None,
    ):
        super().__init__()
        if rope_parameters:
            if rope_parameters.get("rope_type", "default") != "default":
                raise ValueError(f"only the default rope type is supported, got {rope_parameters}")
            self.rope_theta = float(rope_parameters.get("rope_theta", rope_theta))
        else:
            self.rope_theta = float(rope_theta)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
        self.gradient_checkpointing = False
        self.time_embed = TimestepEmbedding(hidden_size)
        self.text_embed = CodecEmbedding(num_embeds, emb_dim, repeats)
        speaker_encoder = SpeakerEncoder(
            mel_dim,
            enc_dim,
            enc_channels,
            enc_kernel_sizes,
            enc_dilations,
            enc_attention_channels,
            enc_res2net_scale,
            enc_se_channels,
        )
        self.input_embed = InputEmbedding(mel_dim, enc_dim, emb_dim, enc_emb_dim, hidden_size, speaker_encoder)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(
                hidden_size,
                num_attention_heads,
                head_dim,
                ff_mult,
                dropout,
                look_back=i in look_backward_layers,
                look_ahead=i in look_ahead_layers,
            )
            for i in range(num_hidden_layers)
        )
        self.norm_out = AdaLayerNormFinal(hidden_size)
        self.proj_out = nn.Linear(hidden_size, mel_dim)

    # -- conditioning --------------------------------------------------------------------------------------------

    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise a `ValueError` for codes that are not `(batch, length ≥ 1)` ids in `[0, num_embeds)`."""
        if codes.dim() != 2 or codes.shape[1] == 0 or codes.shape[0] == 0:
            raise ValueError(f"codes must be a non-empty (batch, length) tensor, got shape {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integer ids, got dtype {codes.dtype}")
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= self.config.num_embeds:
            raise ValueError(
                f"codes must lie in [0, {self.config.num_embeds}) (speech codes only; strip talker special ids), "
                f"got values in [{low}, {high}]"
            )
        frames = codes.shape[1] * self.config.repeats
        if frames > self.config.max_position_embeddings:
            raise ValueError(
                f"{codes.shape[1]} codes give {frames} mel frames, more than max_position_embeddings "
                f"({self.config.max_position_embeddings})"
            )

    def prepare_conditioning(
        self,
        codes: torch.Tensor,
        reference_mel: torch.Tensor,
        speaker_embedding: torch.Tensor,
        guidance: bool = True,
        speaker_features: torch.Tensor | None = None,
    ) -> DiTConditioning:
        """Compute everything that is constant across ODE steps (call once per sampling).

        Args:
            codes (`torch.LongTensor` of shape `(batch, codes)`): speech codes in `[0, num_embeds)`.
            reference_mel (`torch.Tensor` of shape `(batch, ref_frames, mel_dim)`): the speaker's reference mel
                (`ref_mel` of the official speakers).
            speaker_embedding (`torch.Tensor` of shape `(batch, enc_emb_dim)`): the speaker x-vector (`cond`).
            guidance (`bool`, *optional*, defaults to `True`): also prepare the unconditional half used by
                classifier-free guidance (code 0, zero reference mel, zero x-vector).
            speaker_features (`torch.Tensor`, *optional*): the `speaker_features` of an earlier conditioning with the
                same speaker and guidance, to skip the speaker encoder (streaming decodes many windows).

        Returns:
            `DiTConditioning` covering `codes * repeats` frames.
        """
        self.check_codes(codes)
        batch = codes.shape[0]
        mel_dim = self.config.mel_dim
        if reference_mel.dim() != 3 or reference_mel.shape[0] != batch or reference_mel.shape[2] != mel_dim:
            raise ValueError(
                f"reference_mel must be (batch={batch}, frames, mel_dim={mel_dim}), got {tuple(reference_mel.shape)}"
            )
        if speaker_embedding.dim() == 3:  # (batch, 1, enc_emb_dim) as stored in spk_dict.pt
            speaker_embedding = speaker_embedding.squeeze(1)
        if speaker_embedding.shape != (batch, self.config.enc_emb_dim):
            raise ValueError(
                f"speaker_embedding must be (batch={batch}, enc_emb_dim={self.config.enc_emb_dim}), "
                f"got {tuple(speaker_embedding.shape)}"
            )
        dtype = self.proj_out.weight.dtype
        reference_mel, speaker_embedding = reference_mel.to(dtype), speaker_embedding.to(dtype)
        if guidance:
            codes = torch.cat([codes, torch.zeros_like(codes)])
            reference_mel = torch.cat([reference_mel, torch.zeros_like(reference_mel)])
            speaker_embedding = torch.cat([speaker_embedding, torch.zeros_like(speaker_embedding)])
        code_embeds = self.text_embed(codes)
        if speaker_features is None:
            speaker_features = self.input_embed.spk_encoder(reference_mel)
        condition_hidden = self.input_embed.condition(speaker_features, code_embeds, speaker_embedding)
        layout = BlockAttentionLayout(
            code_embeds.shape[1], self.config.block_size, self.config.head_dim, self.rope_theta, codes.device, dtype
        )
        return DiTConditioning(
            code_embeds=code_embeds,
            speaker_features=speaker_features,
            xvector=speaker_embedding,
            condition_hidden=condition_hidden,
            layout=layout,
            batch_size=batch,
            guidance=guidance,
        )

    # -- velocity --------------------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        conditioning: DiTConditioning | None = None,
        *,
        codes: torch.Tensor | None = None,
        reference_mel: torch.Tensor | None = None,
        speaker_embedding: torch.Tensor | None = None,
        guidance_scale: float = 0.5,
        return_dict: bool = True,
    ) -> OmniDiTOutput | tuple[torch.Tensor]:
        """Velocity of the mel flow at time `timestep` (0 = noise, 1 = data).

        Args:
            sample (`torch.Tensor` of shape `(batch, frames, mel_dim)`): the current (noisy) mel.
            timestep (`float` or `torch.Tensor` of shape `()` or `(batch,)`): flow time in `[0, 1]`.
            conditioning (`DiTConditioning`, *optional*): from `prepare_conditioning`; reuse it across steps.
            codes, reference_mel, speaker_embedding (*optional*): convenience path when `conditioning` is not given:
                the conditioning is prepared on the fly (with guidance when `guidance_scale > 0`).
            guidance_scale (`float`, *optional*, defaults to 0.5): with a guidance conditioning, the model runs the
                conditional and unconditional halves as one doubled batch and returns
                `cond + guidance_scale * (cond - uncond)` (the reference's combination). Ignored without guidance.
            return_dict (`bool`, *optional*, defaults to `True`): return an `OmniDiTOutput` instead of a tuple.

        Returns:
            `OmniDiTOutput` with `sample` of shape `(batch, frames, mel_dim)`.
        """
        if conditioning is None:
            if codes is None or reference_mel is None or speaker_embedding is None:
                raise ValueError("pass `conditioning`, or all of `codes`, `reference_mel` and `speaker_embedding`")
            conditioning = self.prepare_conditioning(codes, reference_mel, speaker_embedding, guidance_scale > 0)
        expected = (conditioning.batch_size, conditioning.num_frames, self.config.mel_dim)
        if tuple(sample.shape) != expected:
            raise ValueError(f"sample must have shape {expected} (batch, frames, mel_dim), got {tuple(sample.shape)}")

        timestep = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device)
        timestep = timestep.expand(sample.shape[0]) if timestep.dim() == 0 else timestep
        if conditioning.guidance:
            sample = torch.cat([sample, sample])
            timestep = torch.cat([timestep, timestep])
        time_embedding = self.time_embed(timestep)

        hidden_states = self.input_embed(sample, conditioning.condition_hidden)
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, time_embedding, conditioning.layout
                )
            else:
                hidden_states = block(hidden_states, time_embedding, conditioning.layout)
        velocity = self.proj_out(self.norm_out(hidden_states, time_embedding))

        if conditioning.guidance:
            conditional, unconditional = velocity.chunk(2)
            velocity = conditional + (conditional - unconditional) * guidance_scale
        return OmniDiTOutput(sample=velocity) if return_dict else (velocity,)
