"""`StepDecoder` (one `generate` step per call) lives in `omni_hf.common.step_decoder`; re-exported here."""

from ..common.step_decoder import StepDecoder

__all__ = ["StepDecoder"]
