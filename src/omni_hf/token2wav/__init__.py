"""Token2Wav in Diffusers: the flow-matching DiT, its ODE scheduler, the BigVGAN vocoder and the pipeline."""

from .bigvgan import BigVGANVocoder
from .code_to_wave import CodeToWave, CodeToWaveStream
from .modeling_dit import DiTConditioning, OmniDiTModel
from .pipeline_token2wav import SAMPLING_RATE, DiTSpeakerConditioning, OmniToken2WavPipeline
from .scheduling_flow_match import OmniFlowMatchScheduler

__all__ = [
    "BigVGANVocoder",
    "CodeToWave",
    "CodeToWaveStream",
    "DiTSpeakerConditioning",
    "DiTConditioning",
    "OmniDiTModel",
    "OmniFlowMatchScheduler",
    "OmniToken2WavPipeline",
    "SAMPLING_RATE",
]
