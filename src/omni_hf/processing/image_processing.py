"""Qwen2-VL image/video patching without torchvision.

Images go through transformers' own PIL/numpy `Qwen2VLImageProcessorPil` (bicubic resize via Pillow, rescale 1/255,
CLIP mean/std, 14-pixel patches repeated over the temporal patch of 2, 2x2 merge order), configured with the official
Qwen2.5-Omni pixel limits. Videos reuse that processor's settings frame by frame, with the same Pillow resize and
the same float arithmetic, then group consecutive frames into temporal patches: a video whose frames are all equal
gives exactly the image processor's patches. Everything after the per-frame resize is vectorised over frames.
"""

import math

import numpy as np
from PIL import Image
from transformers import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

# Official Qwen2.5-Omni / qwen-omni-utils defaults.
IMAGE_MIN_PIXELS = 4 * 28 * 28  # 3136
IMAGE_MAX_PIXELS = 16384 * 28 * 28  # 12845056
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
FPS = 2.0
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
FRAME_FACTOR = 2  # = temporal_patch_size


def default_image_processor(**overrides) -> Qwen2VLImageProcessorPil:
    """transformers' PIL Qwen2-VL image processor with the official Qwen2.5-Omni `preprocessor_config.json` values."""
    kwargs = {
        "min_pixels": IMAGE_MIN_PIXELS,
        "max_pixels": IMAGE_MAX_PIXELS,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
    }
    kwargs.update(overrides)
    return Qwen2VLImageProcessorPil(**kwargs)


def smart_nframes(
    total_frames: int,
    video_fps: float,
    fps: float = FPS,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int = FPS_MAX_FRAMES,
    factor: int = FRAME_FACTOR,
) -> int:
    """Number of frames to sample from a video: `fps` per second, clamped to [min_frames, max_frames] and to the
    frames available, rounded down to a multiple of `factor` (Qwen2.5-Omni's `smart_nframes`)."""
    min_frames = math.ceil(min_frames / factor) * factor
    max_frames = math.floor(min(max_frames, total_frames) / factor) * factor
    nframes = total_frames / video_fps * fps
    nframes = min(min(max(nframes, min_frames), max_frames), total_frames)
    nframes = math.floor(nframes / factor) * factor
    if not factor <= nframes <= total_frames:
        raise ValueError(
            f"Cannot sample frames: {total_frames} frame(s) at {video_fps:.3g} fps gives {nframes} frames, "
            f"expected between {factor} and {total_frames}"
        )
    return int(nframes)


def sample_frame_indices(total_frames: int, nframes: int) -> np.ndarray:
    """`nframes` uniformly spaced frame indices in [0, total_frames - 1], `(nframes,)` int64."""
    return np.round(np.linspace(0, total_frames - 1, nframes)).astype(np.int64)


def patchify(frames: np.ndarray, patch_size: int = 14, temporal_patch_size: int = 2, merge_size: int = 2):
    """Cut normalised frames into flattened patches in the Qwen2-VL merge order.

    Args:
        frames: `(T, C, H, W)` float32, T a multiple of `temporal_patch_size`, H and W multiples of
            `patch_size * merge_size`.

    Returns:
        `(grid_t * grid_h * grid_w, C * temporal_patch_size * patch_size**2)` patches (rows ordered by time, then
        2x2 merge windows in raster order, then the patches inside a window) and the grid `(grid_t, grid_h, grid_w)`.
    """
    t, c, h, w = frames.shape
    gt, gh, gw = t // temporal_patch_size, h // patch_size, w // patch_size
    m, p = merge_size, patch_size
    x = frames.reshape(gt, temporal_patch_size, c, gh // m, m, p, gw // m, m, p)
    # -> (gt, gh/m, gw/m, m_h, m_w, C, T, p_h, p_w)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * temporal_patch_size * p * p), (gt, gh, gw)


def _rescale_normalize(frames: np.ndarray, image_processor) -> np.ndarray:
    """`(T, C, H, W)` uint8 → float32 with the image processor's arithmetic (float64 rescale, float32 normalise)."""
    x = frames
    if image_processor.do_rescale:
        x = (x.astype(np.float64) * image_processor.rescale_factor).astype(np.float32)
    else:
        x = x.astype(np.float32)
    if image_processor.do_normalize:
        mean = np.asarray(image_processor.image_mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(image_processor.image_std, dtype=np.float32).reshape(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def resize_frames(frames: np.ndarray, height: int, width: int, resample) -> np.ndarray:
    """Resize `(T, H, W, 3)` uint8 frames with Pillow (as transformers' PIL backend does); `(T, height, width, 3)`."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), resample=resample)) for f in frames])


def preprocess_video(
    frames: np.ndarray,
    image_processor,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Patch one video.

    Args:
        frames: `(T, H, W, 3)` uint8 RGB frames; an odd T is padded by repeating the last frame.
        image_processor: a Qwen2-VL image processor; its resample filter, rescale/normalise settings and patch sizes
            are used.
        min_pixels / max_pixels: per-frame pixel limits for `smart_resize` (Qwen2.5-Omni: 128*28*28 / 768*28*28).

    Returns:
        `pixel_values_videos` `(grid_t * grid_h * grid_w, 3 * 2 * 14 * 14)` float32 and `(grid_t, grid_h, grid_w)`.
    """
    patch, merge, temporal = (
        image_processor.patch_size,
        image_processor.merge_size,
        image_processor.temporal_patch_size,
    )
    _, height, width, _ = frames.shape
    if image_processor.do_resize:
        height, width = smart_resize(height, width, factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
        frames = resize_frames(frames, height, width, image_processor.resample)
    x = _rescale_normalize(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)), image_processor)
    if pad := -x.shape[0] % temporal:
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    return patchify(x, patch, temporal, merge)


def preprocess_videos(
    videos: list[np.ndarray],
    image_processor,
    min_pixels: int = VIDEO_MIN_PIXELS,
    max_pixels: int = VIDEO_MAX_PIXELS,
) -> dict[str, np.ndarray]:
    """Patch several videos: `pixel_values_videos` `(sum of patches, 1176)` float32, `video_grid_thw` `(n, 3)` int64."""
    patches, grids = [], []
    for frames in videos:
        p, grid = preprocess_video(frames, image_processor, min_pixels, max_pixels)
        patches.append(p)
        grids.append(grid)
    return {
        "pixel_values_videos": np.concatenate(patches, axis=0),
        "video_grid_thw": np.asarray(grids, dtype=np.int64).reshape(-1, 3),
    }


__all__ = [
    "FPS",
    "FPS_MAX_FRAMES",
    "FPS_MIN_FRAMES",
    "FRAME_FACTOR",
    "IMAGE_MAX_PIXELS",
    "IMAGE_MIN_PIXELS",
    "VIDEO_MAX_PIXELS",
    "VIDEO_MIN_PIXELS",
    "default_image_processor",
    "patchify",
    "preprocess_video",
    "preprocess_videos",
    "resize_frames",
    "sample_frame_indices",
    "smart_nframes",
    "smart_resize",
]
