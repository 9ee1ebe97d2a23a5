"""Processing for Qwen2.5-Omni: the audio and media layer, Qwen2-VL patching without torchvision, budgets, and
`OmniProcessor`."""

from .audio import (
    AUDIO_EXTENSIONS,
    AUDIO_TRACK_EXTENSIONS,
    MAX_AUDIO_SECONDS,
    THINKER_SAMPLING_RATE,
    TOKEN2WAV_SAMPLING_RATE,
    VIDEO_EXTENSIONS,
    check_audio_samples,
    read_audio,
)
from .budgets import check_generation_budget
from .chat_utils import DEFAULT_SYSTEM_PROMPT, default_chat_template
from .feature_extraction import default_feature_extractor, extract_audio_features
from .image_processing import (
    FPS,
    FPS_MAX_FRAMES,
    FPS_MIN_FRAMES,
    IMAGE_MAX_PIXELS,
    IMAGE_MIN_PIXELS,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    default_image_processor,
    patchify,
    preprocess_video,
    preprocess_videos,
    sample_frame_indices,
    smart_nframes,
    smart_resize,
)
from .media import (
    AUDIO_SAMPLING_RATE,
    IMAGE_EXTENSIONS,
    VideoClip,
    as_video_clip,
    flatten_media,
    load_audio,
    load_image,
    load_video,
    resample_audio,
)
from .processing_omni import OmniProcessor

__all__ = [
    "AUDIO_EXTENSIONS",
    "AUDIO_SAMPLING_RATE",
    "AUDIO_TRACK_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MAX_AUDIO_SECONDS",
    "THINKER_SAMPLING_RATE",
    "TOKEN2WAV_SAMPLING_RATE",
    "VIDEO_EXTENSIONS",
    "check_audio_samples",
    "check_generation_budget",
    "read_audio",
    "DEFAULT_SYSTEM_PROMPT",
    "FPS",
    "FPS_MAX_FRAMES",
    "FPS_MIN_FRAMES",
    "IMAGE_MAX_PIXELS",
    "IMAGE_MIN_PIXELS",
    "OmniProcessor",
    "VIDEO_MAX_PIXELS",
    "VIDEO_MIN_PIXELS",
    "VideoClip",
    "as_video_clip",
    "default_chat_template",
    "default_feature_extractor",
    "default_image_processor",
    "extract_audio_features",
    "flatten_media",
    "load_audio",
    "load_image",
    "load_video",
    "patchify",
    "preprocess_video",
    "preprocess_videos",
    "resample_audio",
    "sample_frame_indices",
    "smart_nframes",
    "smart_resize",
]
