"""Transcribers for ranking the Talker's speech: any transformers ASR checkpoint (pipeline API) or a user callable.

A transcriber is called as `transcriber(waveform, sampling_rate) -> str` with a float32 mono `(samples,)` waveform;
`Transcriber` resamples to the rate the model or callable wants (`omni_hf.processing.audio.resample_audio`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
from transformers.utils import logging

from ..processing.audio import THINKER_SAMPLING_RATE, resample_audio

logger = logging.get_logger(__name__)

DEFAULT_ASR_MODEL = "openai/whisper-large-v3"  # for real runs (needs the Hub or a local copy)


class Transcriber:
    """Wrap `function(waveform float32 at sampling_rate) -> str` so any input rate is accepted."""

    def __init__(
        self, function: Callable[[np.ndarray], str], sampling_rate: int = THINKER_SAMPLING_RATE, name: str = "callable"
    ):
        if not callable(function):
            raise ValueError(f"transcriber must be callable, got {type(function).__name__}")
        self.function, self.sampling_rate, self.name = function, int(sampling_rate), name

    def __call__(self, waveform, sampling_rate: int) -> str:
        audio = resample_audio(np.asarray(waveform, dtype=np.float32), int(sampling_rate), self.sampling_rate)
        text = self.function(audio)
        if not isinstance(text, str):
            raise ValueError(f"transcriber {self.name!r} must return a str, got {type(text).__name__}")
        return text

    def __repr__(self) -> str:
        return f"Transcriber({self.name!r}, sampling_rate={self.sampling_rate})"


def build_transcriber(
    asr: str | Callable | Transcriber | None = None,
    device=None,
    sampling_rate: int = THINKER_SAMPLING_RATE,
    generate_kwargs: dict | None = None,
    **pipeline_kwargs,
) -> Transcriber:
    """A `Transcriber` from a transformers ASR model id or local path (`pipeline("automatic-speech-recognition")`),
    a callable `(waveform at sampling_rate) -> str`, or an existing `Transcriber`. None: `DEFAULT_ASR_MODEL`.

    Raises:
        ValueError: the model cannot be loaded (naming it and the reason).
    """
    if isinstance(asr, Transcriber):
        return asr
    if callable(asr):
        if len(inspect.signature(asr).parameters) < 1:
            raise ValueError("an ASR callable must take the waveform as its first argument")
        return Transcriber(asr, sampling_rate, getattr(asr, "__name__", type(asr).__name__))
    asr = asr or DEFAULT_ASR_MODEL
    if not isinstance(asr, str):
        raise ValueError(f"asr must be a model id/path, a callable or a Transcriber, got {type(asr).__name__}")
    from transformers import pipeline

    try:
        pipe = pipeline("automatic-speech-recognition", model=asr, device=device, **pipeline_kwargs)
    except Exception as error:  # missing files, no network, not an ASR model ...
        where = "local directory" if Path(asr).exists() else "model id"
        raise ValueError(
            f"ASR model {asr!r} ({where}) cannot be loaded with transformers' automatic-speech-recognition "
            f"pipeline: {type(error).__name__}: {error}"
        ) from error
    rate = int(pipe.feature_extractor.sampling_rate)
    kwargs = {"generate_kwargs": generate_kwargs} if generate_kwargs else {}

    def transcribe(audio: np.ndarray) -> str:
        return pipe({"raw": audio, "sampling_rate": rate}, **kwargs)["text"].strip()

    logger.info(f"ASR for ranking: {asr} ({type(pipe.model).__name__}, {rate} Hz)")
    return Transcriber(transcribe, rate, asr)


def build_tiny_ctc_asr(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random wav2vec2-CTC ASR checkpoint (character vocabulary) for offline CPU runs and tests.

    Its transcripts are deterministic gibberish: enough to exercise the pipeline route, not to recognise speech.
    """
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{ch: i + 3 for i, ch in enumerate(letters)}}
    (path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), pad_token="<pad>", unk_token="<unk>")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 2.0)  # varied argmax letters instead of one blank everywhere
        model.lm_head.bias[vocab["|"]] += 22.0  # and frequent word breaks, so transcripts differ in word counts
    model.save_pretrained(path)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path


if __name__ == "__main__":  # python -m omni_hf.training.asr demo_assets/tiny-asr
    import sys

    print(build_tiny_ctc_asr(sys.argv[1] if len(sys.argv) > 1 else "demo_assets/tiny-asr"))

__all__ = ["DEFAULT_ASR_MODEL", "Transcriber", "build_tiny_ctc_asr", "build_transcriber"]
