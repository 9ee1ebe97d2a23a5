"""Training losses of token2wav: the DiT's conditional flow-matching loss (the model file holds inference only)."""

import torch
import torch.nn.functional as F


def flow_matching_loss(
    dit,
    mel: torch.Tensor,
    codes: torch.Tensor,
    reference_mel: torch.Tensor,
    speaker_embedding: torch.Tensor,
    drop_condition_prob: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Conditional flow-matching (rectified flow) loss of token2wav's DiT (`OmniDiTModel`) for one batch.

    `t ~ U(0, 1)` per utterance, `x0 ~ N(0, I)`, `x1 = mel`, `x_t = (1 - t) x0 + t x1`; the model regresses the
    velocity `x1 - x0` (MSE over all frames and bins). With probability `drop_condition_prob` per utterance the
    conditions are dropped exactly as in the unconditional half of guidance (code 0, zero reference mel, zero
    x-vector), which is what classifier-free guidance needs at inference.

    Args:
        dit (`OmniDiTModel`): the DiT (with or without LoRA adapters).
        mel (`torch.Tensor` of shape `(batch, codes * repeats, mel_dim)`): target mel.
        codes (`torch.LongTensor` of shape `(batch, codes)`): speech codes.
        reference_mel (`torch.Tensor` of shape `(batch, ref_frames, mel_dim)`): speaker reference mel.
        speaker_embedding (`torch.Tensor` of shape `(batch, enc_emb_dim)`): speaker x-vector.
        drop_condition_prob (`float`, *optional*, defaults to 0.2): per-utterance condition-dropout probability.
        generator (`torch.Generator`, *optional*): makes `t`, the noise and the dropout reproducible.

    Returns:
        Scalar loss tensor.
    """
    dit.check_codes(codes)
    batch, frames = codes.shape[0], codes.shape[1] * dit.config.repeats
    if tuple(mel.shape) != (batch, frames, dit.config.mel_dim):
        raise ValueError(
            f"mel must be (batch, codes * repeats, mel_dim) = {(batch, frames, dit.config.mel_dim)}, "
            f"got {tuple(mel.shape)}"
        )
    device, dtype = mel.device, mel.dtype
    drop = torch.rand(batch, generator=generator, device=device) < drop_condition_prob
    if speaker_embedding.dim() == 3:
        speaker_embedding = speaker_embedding.squeeze(1)
    codes = codes.masked_fill(drop[:, None], 0)
    reference_mel = reference_mel.masked_fill(drop[:, None, None], 0.0)
    speaker_embedding = speaker_embedding.masked_fill(drop[:, None], 0.0)
    conditioning = dit.prepare_conditioning(codes, reference_mel, speaker_embedding, guidance=False)

    t = torch.rand(batch, generator=generator, device=device, dtype=dtype)
    noise = torch.randn(mel.shape, generator=generator, device=device, dtype=dtype)
    noisy = (1 - t[:, None, None]) * noise + t[:, None, None] * mel
    velocity = dit(noisy, t, conditioning).sample
    return F.mse_loss(velocity.float(), (mel - noise).float())


__all__ = ["flow_matching_loss"]
