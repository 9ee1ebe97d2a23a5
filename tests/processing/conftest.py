"""Shared fixtures for the processing tests: synthetic media files, the tiny processor, and transformers' reference
`Qwen2_5OmniProcessor` built on the same tokenizer / image processor / feature extractor."""

import numpy as np
import pytest
from transformers import BatchFeature, Qwen2_5OmniProcessor
from transformers.video_processing_utils import VideoProcessorMixin

from omni_hf.testing.media import write_image, write_video, write_wav
from omni_hf.testing.tokenizer import build_tiny_processor


class FixedVideoProcessor(VideoProcessorMixin):
    """Stands in for transformers' torchvision video processor: returns the given (identical) patches and grids, so
    the reference processor's placeholder expansion runs on exactly the pixel values our path produced."""

    temporal_patch_size = 2
    merge_size = 2
    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, outputs: dict | None = None):
        super().__init__()
        self.outputs = outputs or {}

    def __call__(self, videos, **kwargs):
        return BatchFeature(dict(self.outputs))


class ReferenceProcessor(Qwen2_5OmniProcessor):
    """transformers' processor; only its class check on the (torchvision-only) video processor is relaxed."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor":
            return type(argument)
        return super().check_argument_for_proper_class(argument_name, argument)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Paths of synthetic media files."""
    root = tmp_path_factory.mktemp("media")
    return {
        "wav": write_wav(root / "tones.wav", duration=1.5),
        "wav_short": write_wav(root / "short.wav", duration=0.7, kind="noise", seed=1),
        "wav_44k_stereo": write_wav(root / "stereo44k.wav", duration=1.0, sampling_rate=44100, channels=2),
        "wav_8k": write_wav(root / "tel8k.wav", duration=1.0, sampling_rate=8000),
        "flac": write_wav(root / "tones.flac", duration=1.0, sampling_rate=22050),
        "ogg": write_wav(root / "tones.ogg", duration=1.0, sampling_rate=16000),
        "mp3": write_wav(root / "tones.mp3", duration=1.0, sampling_rate=44100, channels=2),
        "png": write_image(root / "shapes.png", width=224, height=168),
        "png_small": write_image(root / "small.png", width=60, height=40, seed=2),
        "video": write_video(root / "clip.mp4", duration=2.0, with_audio=True),
        "video_long": write_video(
            root / "long.mp4", duration=4.0, fps=8, width=84, height=56, with_audio=True, seed=3
        ),
        "video_8s": write_video(root / "eight.mp4", duration=8.0, fps=4, width=56, height=56, with_audio=True, seed=4),
        "video_silent": write_video(root / "silent.mp4", duration=2.0, with_audio=False),
        "root": root,
    }


@pytest.fixture(scope="session")
def processor():
    return build_tiny_processor()


@pytest.fixture
def reference(processor):
    """A factory: `reference(video_outputs=None)` → transformers' `Qwen2_5OmniProcessor` with our components."""

    def make(video_outputs: dict | None = None):
        return ReferenceProcessor(
            image_processor=processor.image_processor,
            video_processor=FixedVideoProcessor(video_outputs),
            feature_extractor=processor.feature_extractor,
            tokenizer=processor.tokenizer,
            chat_template=processor.chat_template,
        )

    return make


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)
