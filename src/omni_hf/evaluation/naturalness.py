"""Optional naturalness (predicted MOS) scorer: UTMOSv2 when its package is installed and the user names it.

`load_naturalness("utmosv2")` builds `utmosv2.create_model(pretrained=True)`, which fetches its weights into the Hub
cache the first time: only when the user asks for it. Without the package: a clear error, no fallback.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile

import numpy as np

UTMOS = "utmosv2"


class UTMOSv2Scorer:
    """Predicted MOS (1-5, higher is more natural) from UTMOSv2, scored on a temporary 16 kHz WAV of the clip."""

    sampling_rate = 16000

    def __init__(self, device: str = "cpu"):
        try:
            import utmosv2
        except ImportError:
            raise ValueError("--naturalness utmosv2 needs the utmosv2 package (pip install utmosv2)") from None
        self._model = utmosv2.create_model(pretrained=True, device=device)
        self.name = f"utmosv2 {importlib.metadata.version('utmosv2')}"

    def __call__(self, waveform, sampling_rate: int) -> float:
        import soundfile

        from ..processing.audio import resample_audio

        audio = resample_audio(np.asarray(waveform, dtype=np.float32), int(sampling_rate), self.sampling_rate)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "clip.wav")
            soundfile.write(path, audio, self.sampling_rate)
            return float(self._model.predict(input_path=path))


def load_naturalness(name: str | None, device: str = "cpu"):
    """None: no naturalness scorer; `"utmosv2"`: `UTMOSv2Scorer`."""
    if name is None:
        return None
    if name != UTMOS:
        raise ValueError(f"--naturalness {name}: the naturalness scorer known is {UTMOS!r}")
    return UTMOSv2Scorer(device)


__all__ = ["UTMOS", "UTMOSv2Scorer", "load_naturalness"]
