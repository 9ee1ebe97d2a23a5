"""Token2Wav as a Diffusers pipeline: speech codes → mel (DiT + flow-matching ODE) → 24 kHz waveform (BigVGAN)."""

import inspect

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from .bigvgan import BigVGANVocoder
from .modeling_dit import OmniDiTModel
from .scheduling_flow_match import OmniFlowMatchScheduler

SAMPLING_RATE = 24000
DIT_PREFIX = "token2wav.code2wav_dit_model."
VOCODER_PREFIX = "token2wav.code2wav_bigvgan_model."


class OmniToken2WavPipeline(DiffusionPipeline):
    r"""Qwen2.5-Omni code-to-waveform pipeline.

    Components:
        dit ([`OmniDiTModel`]): predicts the mel's flow-matching velocity from codes and a speaker.
        scheduler ([`OmniFlowMatchScheduler`]): the ODE solver (official: 10 grid points, RK4, sway -1).
        vocoder ([`BigVGANVocoder`]): mel → waveform at 24 kHz (240 samples per mel frame, 2 frames per code).

    Example:

    ```python
    >>> pipe = OmniToken2WavPipeline.from_pretrained("path/to/omni_hf_model/token2wav")
    >>> speaker = model.speakers["Chelsie"]
    >>> audio = pipe(codes, reference_mel=speaker.ref_mel, speaker_embedding=speaker.cond).audios  # (1, samples)
    ```"""

    model_cpu_offload_seq = "dit->vocoder"
    sampling_rate = SAMPLING_RATE

    def __init__(self, dit: OmniDiTModel, scheduler: OmniFlowMatchScheduler, vocoder: BigVGANVocoder):
        super().__init__()
        self.register_modules(dit=dit, scheduler=scheduler, vocoder=vocoder)

    @classmethod
    def from_official(cls, token2wav_config: dict, state_dict: dict[str, torch.Tensor]) -> "OmniToken2WavPipeline":
        """Build from an official `token2wav_config` and the `token2wav.code2wav_*` tensors of a checkpoint."""

        def settings(key: str, model_class) -> dict:
            # Official sub-configs also carry every PreTrainedConfig field (dtype, id2label, ...): keep ours only.
            accepted = inspect.signature(model_class.__init__).parameters
            return {k: v for k, v in (token2wav_config.get(key) or {}).items() if k in accepted and k != "model_type"}

        dit = OmniDiTModel.from_config(settings("dit_config", OmniDiTModel))
        vocoder = BigVGANVocoder.from_config(settings("bigvgan_config", BigVGANVocoder))
        for model, prefix in ((dit, DIT_PREFIX), (vocoder, VOCODER_PREFIX)):
            weights = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if weights:
                model.load_state_dict(weights, strict=True)
        return cls(dit=dit.float().eval(), scheduler=OmniFlowMatchScheduler(), vocoder=vocoder.float().eval())

    def check_inputs(self, codes, reference_mel, speaker_embedding, num_inference_steps):
        if not torch.is_tensor(codes) or codes.dim() not in (1, 2):
            raise ValueError(f"codes must be a (codes,) or (batch, codes) integer tensor, got {type(codes).__name__}")
        if reference_mel is None or speaker_embedding is None:
            raise ValueError("Pass the speaker conditioning: reference_mel (batch, frames, 80) and speaker_embedding")
        if num_inference_steps < 2:
            raise ValueError(f"num_inference_steps must be at least 2 (grid points), got {num_inference_steps}")

    def prepare_latents(self, batch, frames, dtype, device, generator=None, latents=None) -> torch.Tensor:
        shape = (batch, frames, self.dit.config.mel_dim)
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
            return latents.to(device=device, dtype=dtype)
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    @torch.no_grad()
    def __call__(
        self,
        codes: torch.Tensor,
        reference_mel: torch.Tensor | None = None,
        speaker_embedding: torch.Tensor | None = None,
        num_inference_steps: int = 10,
        guidance_scale: float = 0.5,
        solver: str | None = None,
        sway_coefficient: float | None = -1.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        """
        Args:
            codes: `(batch, codes)` speech codes in `[0, dit.config.num_embeds)` (50 per second).
            reference_mel: `(batch or 1, frames, 80)` the speaker's reference mel (`Speaker.ref_mel`).
            speaker_embedding: `(batch or 1, enc_emb_dim)` the speaker x-vector (`Speaker.cond`).
            num_inference_steps: ODE grid points (official 10 → 9 RK4 intervals, 36 DiT evaluations).
            guidance_scale: classifier-free guidance `c + s * (c - u)` (official 0.5; 0 disables it).
            solver: `"euler"`, `"midpoint"` or `"rk4"`; default: the scheduler's (rk4).
            sway_coefficient: sway sampling of the time grid (official -1; None for a uniform grid).
            generator / latents: the initial noise `(batch, codes * 2, 80)`.
            output_type: `"pt"` / `"np"` waveforms `(batch, codes * 2 * 240)`, or `"mel"` for `(batch, 80, frames)`.

        Returns:
            [`AudioPipelineOutput`] with `audios`, or a tuple when `return_dict=False`.
        """
        self.check_inputs(codes, reference_mel, speaker_embedding, num_inference_steps)
        codes = codes.unsqueeze(0) if codes.dim() == 1 else codes
        device, dtype = self._execution_device, self.dit.dtype
        batch = codes.shape[0]
        reference_mel = reference_mel.to(device, dtype).expand(batch, -1, -1)
        speaker_embedding = (
            speaker_embedding.to(device, dtype).reshape(speaker_embedding.shape[0], -1).expand(batch, -1)
        )
        conditioning = self.dit.prepare_conditioning(
            codes.to(device), reference_mel, speaker_embedding, guidance_scale > 0
        )
        sample = self.prepare_latents(batch, conditioning.num_frames, dtype, device, generator, latents)

        scheduler = self.scheduler
        overrides = {"sway_coefficient": sway_coefficient} | ({"solver": solver} if solver is not None else {})
        if any(scheduler.config.get(k) != v for k, v in overrides.items()):
            scheduler = OmniFlowMatchScheduler.from_config(scheduler.config, **overrides)
        scheduler.set_timesteps(num_inference_steps, device=device)
        with self.progress_bar(total=len(scheduler.timesteps)) as progress:
            for t in scheduler.timesteps:
                velocity = self.dit(sample, t, conditioning, guidance_scale=guidance_scale).sample
                sample = scheduler.step(velocity, t, sample).prev_sample
                progress.update()
        mel = sample.transpose(1, 2)  # (batch, 80, frames)
        if output_type == "mel":
            audios = mel
        else:
            audios = self.vocoder(mel.to(self.vocoder.dtype))
            audios = audios.reshape(batch, -1).float()
            if output_type == "np":
                audios = audios.cpu().numpy().astype(np.float32)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (audios,)
        return AudioPipelineOutput(audios=audios)


__all__ = ["OmniToken2WavPipeline", "SAMPLING_RATE"]
