"""Media loading for Qwen2.5-Omni: images (validated PIL/numpy) and videos (RGB frames sampled by timestamp, resized
while decoding, + optional audio track); audio comes from `omni_hf.processing.audio`. One clear error per bad input,
and budgets (pixels, duration, tokens) checked from the headers before anything is decoded.

No torchvision, torchcodec or ffmpeg binary needed: videos are decoded with PyAV, images with Pillow.
"""

import io
import os
import warnings
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from PIL import Image
from transformers.utils import logging
from transformers.video_utils import VideoMetadata

from .audio import (
    AUDIO_SAMPLING_RATE,
    AUDIO_TRACK_EXTENSIONS,
    VIDEO_EXTENSIONS,
    check_duration,
    check_file,
    check_sampling_rate,
    decode_audio_track,
    describe,
    load_audio,
    probe_audio,
    resample_audio,
)
from .image_processing import (
    FPS,
    FPS_MAX_FRAMES,
    FPS_MIN_FRAMES,
    FRAME_FACTOR,
    sample_frame_indices,
    smart_nframes,
    smart_resize,
)

logger = logging.get_logger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# Qwen2-VL's original `smart_resize` refused images whose sides are below its resize factor (patch 14 x merge 2).
MIN_IMAGE_SIDE = 28
MAX_ASPECT_RATIO = 200
# Largest image or video frame decoded at all (read from the header first): 8192 x 8192. The processor resizes
# anything above its max_pixels (12.8 MP for images) down, so larger inputs only cost memory and time.
MAX_DECODE_PIXELS = 8192 * 8192
# Frame timestamps spread more than this (relative to the median interval) mark a variable-frame-rate video.
VFR_TOLERANCE = 0.25

PathLike = str | os.PathLike


@dataclass
class VideoClip:
    """A decoded video.

    Attributes:
        frames: `(num_frames, height, width, 3)` uint8 RGB frames (an even number of them, sampled uniformly in time).
        fps: frames per second of `frames` (the sampling rate actually achieved; `second_per_grid = 2 / fps`).
        audio: `(samples,)` float32 mono 16 kHz audio track, or None when not loaded / absent.
        source: where the clip came from (a path, or "<array>").
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    source: str = "<array>"

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


# ----------------------------------------------------------------------------------------------------------- images


def image_size(image: Any) -> tuple[int, int]:
    """(height, width) of a PIL image or an `(H, W)`, `(H, W, C)` or `(C, H, W)` array (C in 1, 3, 4)."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    shape = np.shape(image)
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    if len(shape) == 3 and shape[0] in (1, 3, 4):  # channels first wins when ambiguous, as transformers infers
        return int(shape[1]), int(shape[2])
    if len(shape) == 3 and shape[-1] in (1, 3, 4):
        return int(shape[0]), int(shape[1])
    raise ValueError(f"Image array of shape {shape}: expected (H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4")


def check_image_size(height: int, width: int, source: str, min_side: int = MIN_IMAGE_SIDE) -> None:
    """Refuse images too small to patch or with an absurd aspect ratio (the processor resizes large ones down)."""
    if min(height, width) < max(1, min_side):
        raise ValueError(
            f"Image {source} is {width}x{height} pixels: too small to patch, both sides must be at least {min_side} pixels"
        )
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(
            f"Image {source} is {width}x{height} pixels: aspect ratio {ratio:.1f} exceeds the maximum of {MAX_ASPECT_RATIO}"
        )


def check_decode_pixels(height: int, width: int, source: str, max_pixels: int | None = MAX_DECODE_PIXELS) -> None:
    """Refuse, from the header, an image or frame too large to decode (`max_pixels`, None: no limit)."""
    if max_pixels is not None and height * width > max_pixels:
        raise ValueError(
            f"{source} is {width}x{height} = {height * width / 1e6:.1f} MP, more than the {max_pixels / 1e6:.1f} MP "
            "decoded at most: downscale it first (the model sees at most 12.8 MP of an image)"
        )


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grayscale images → 8-bit "L" (Pillow's own RGB conversion clips them white)."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
    else:  # 16-bit samples (Pillow opens 16-bit PNGs as "I;16" or "I"); 8-bit ranges are kept as they are
        scale = 1 / 257 if values.size and values.max() > 255 or image.mode.startswith("I;16") else 1.0
    return Image.fromarray(np.clip(np.round(values * scale), 0, 255).astype(np.uint8), mode="L")


def _refuse_animation(image: Image.Image, source: str) -> None:
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise ValueError(
            f"Image {source} is animated ({frames} frames): pass it as a video "
            '({"type": "video", "video": path}; GIFs are read as videos) or save the frame you want as a still image'
        )


def load_image(
    image: Any, min_side: int = MIN_IMAGE_SIDE, max_decode_pixels: int | None = MAX_DECODE_PIXELS
) -> Image.Image | np.ndarray:
    """Load and validate one image. Paths are opened with Pillow (size checked from the header before decoding);
    PIL images and arrays are validated and returned unchanged (the image processor converts them to RGB exactly as
    transformers does), except 16-bit images, which are scaled to 8 bits first. Animated images are refused.

    Images larger than the processor's `max_pixels` are fine: the processor resizes them down.
    """
    if isinstance(image, (str, os.PathLike, bytes, bytearray)):
        is_path = not isinstance(image, (bytes, bytearray))
        path = check_file(image, "Image", IMAGE_EXTENSIONS) if is_path else describe(image)
        name = repr(path) if is_path else path
        try:
            with Image.open(path if is_path else io.BytesIO(image)) as opened:
                check_decode_pixels(opened.height, opened.width, f"Image {name}", max_decode_pixels)
                _refuse_animation(opened, name)
                opened.load()
                keep = ("RGB", "RGBA", "L", "LA", "P", "I", "F")
                image = (
                    opened.copy() if opened.mode in keep or opened.mode.startswith("I;16") else opened.convert("RGB")
                )
        except ValueError:
            raise
        except Image.DecompressionBombError as err:
            raise ValueError(f"Image {name} is too large to decode safely: {err}") from None
        except Exception as err:
            raise ValueError(
                f"Could not decode image file {name}: it is corrupt or not a valid image ({err})"
            ) from None
        image = _eight_bit(image)
        check_image_size(image.height, image.width, name, min_side)
        return image
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch tensor
        image = image.detach().cpu().numpy()
    if isinstance(image, Image.Image):
        _refuse_animation(image, describe(image))
        image = _eight_bit(image)
    if isinstance(image, np.ndarray) and image.dtype.kind not in "uif":
        raise ValueError(
            f"Image {describe(image)} has dtype {image.dtype}: expected uint8 (0..255), uint16 or float (0..1) pixels "
            "(a boolean mask: multiply it by 255 and convert to uint8 first)"
        )
    if isinstance(image, np.ndarray) and image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    if isinstance(image, (Image.Image, np.ndarray)):
        height, width = image_size(image)
        check_image_size(height, width, describe(image), min_side)
        return image
    raise ValueError(f"Unsupported image input {describe(image)}: expected a file path, a PIL image or a numpy array")


# ----------------------------------------------------------------------------------------------------------- video


def probe_video(container, stream) -> tuple[VideoMetadata, np.ndarray]:
    """Header facts and frame timestamps of a video stream, by demuxing packets (no decoding).

    Returns:
        transformers' `VideoMetadata` (total_num_frames, fps, width, height, duration) and the sorted
        presentation timestamps `(frames,)` float64 seconds (empty when the packets carry none).
    """
    times = []
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None:
            times.append(float(packet.pts * packet.time_base))
    container.seek(0)
    times = np.sort(np.asarray(times, dtype=np.float64))
    total = int(stream.frames) or len(times)
    interval = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    if duration <= 0 and len(times) > 1:
        duration = float(times[-1] - times[0]) + interval
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    if fps <= 0:
        fps = total / duration if duration > 0 else FPS
    metadata = VideoMetadata(
        total_num_frames=total,
        fps=fps,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        duration=duration or total / fps,
        video_backend="pyav",
    )
    return metadata, times


def _is_variable_rate(times: np.ndarray) -> bool:
    if len(times) < 3:
        return False
    steps = np.diff(times)
    median = float(np.median(steps))
    return median > 0 and float(np.abs(steps - median).max()) > VFR_TOLERANCE * median


def _sample_indices(times: np.ndarray, total: int, nframes: int) -> np.ndarray:
    """Frame positions to keep: uniform in frame index for constant-rate videos (the reference's rule), uniform
    in presentation time for variable-rate ones (the frame nearest each target time)."""
    if not _is_variable_rate(times) or len(times) != total:
        return sample_frame_indices(total, nframes)
    targets = np.linspace(times[0], times[-1], nframes)
    right = np.clip(np.searchsorted(times, targets), 1, len(times) - 1)
    nearer_left = targets - times[right - 1] <= times[right] - targets
    return np.where(nearer_left, right - 1, right).astype(np.int64)


def video_tokens(nframes: int, height: int, width: int, patch: int = 14, merge: int = 2, temporal: int = 2) -> int:
    """Thinker tokens of a video of `nframes` frames already resized to `height` x `width`."""
    return -(-nframes // temporal) * (height // patch) * (width // patch) // (merge * merge)


def load_video(
    video: PathLike,
    fps: float = FPS,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int = FPS_MAX_FRAMES,
    with_audio: bool = False,
    audio_sampling_rate: int = AUDIO_SAMPLING_RATE,
    resize: dict | None = None,
    max_seconds: float | None = None,
    truncate: bool = False,
    max_tokens: int | None = None,
    max_decode_pixels: int | None = MAX_DECODE_PIXELS,
) -> VideoClip:
    """Decode a video file with PyAV: `fps` frames per second sampled uniformly in time (Qwen2.5-Omni's
    `smart_nframes`: at least `min_frames`, at most `max_frames`, an even count), plus its audio track (16 kHz mono)
    if `with_audio`.

    Args:
        resize: `{"min_pixels", "max_pixels", "factor", "resample"}`: each kept frame is resized with Pillow as soon
            as it is decoded (the processor's own `smart_resize` + resize, so the result is identical while only
            small frames are held in memory).
        max_seconds / truncate: longer videos are refused, or (`truncate=True`) cut, frames and audio alike, with a
            warning; checked from the header before decoding.
        max_tokens: refuse, from the header, a video that would take more Thinker tokens than this.
        max_decode_pixels: refuse, from the header, frames larger than this.

    Raises:
        FileNotFoundError: missing file. ValueError (naming the file): empty, corrupt or unsupported file, no video
        stream, too few frames, over a budget, or no audio track when `with_audio=True`.
    """
    path = check_file(video, "Video", VIDEO_EXTENSIONS)
    try:
        container = av.open(path)
    except Exception as err:
        raise ValueError(f"Could not open video file {path!r}: it is corrupt or not a valid video ({err})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"Video file {path!r} has no video stream")
        stream = container.streams.video[0]
        if with_audio and not container.streams.audio:
            raise ValueError(
                f"Video file {path!r} has no audio track, but its audio was requested (use_audio_in_video=True): "
                "pass use_audio_in_video=False or a video with sound"
            )
        try:
            meta, times = probe_video(container, stream)
            check_decode_pixels(meta.height, meta.width, f"Video {path!r} (frame size)", max_decode_pixels)
            keep = check_duration(meta.duration, repr(path), max_seconds, truncate, what="Video")
            total, video_fps = meta.total_num_frames, meta.fps
            if keep is not None:
                kept = times[times < times[0] + keep] if len(times) else times
                total = len(kept) if len(kept) else int(keep * video_fps)
                times = kept
            if total < FRAME_FACTOR:
                raise ValueError(f"Video file {path!r} has {total} frame(s): at least {FRAME_FACTOR} are needed")
            nframes = smart_nframes(total, video_fps, fps=fps, min_frames=min_frames, max_frames=max_frames)
            size = (meta.height, meta.width)
            if resize is not None:
                size = smart_resize(*size, resize["factor"], resize["min_pixels"], resize["max_pixels"])
            tokens = video_tokens(nframes, *size)
            if max_tokens is not None and tokens > max_tokens:
                raise ValueError(
                    f"Video {path!r} ({meta.width}x{meta.height}, {meta.duration:.1f} s) would take {tokens} tokens "
                    f"({nframes} frames at {size[1]}x{size[0]}), more than the {max_tokens} allowed: "
                    "lower fps / max_pixels or cut the video"
                )
            indices = _sample_indices(times, total, nframes)
            frames = _decode_frames(container, stream, indices, size if resize is not None else None, resize)
        except av.error.FFmpegError as err:  # a ValueError subclass: catch it first, and name the file
            raise ValueError(f"Could not decode video file {path!r}: it is corrupt ({err})") from None
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"Could not decode video file {path!r}: it is corrupt ({err})") from None
    audio = None
    if with_audio:
        track, rate = decode_audio_track(path, keep)
        audio = resample_audio(track, rate, audio_sampling_rate)
    sample_fps = nframes / max(total, 1e-6) * video_fps
    return VideoClip(frames=frames, fps=sample_fps, audio=audio, source=path)


def _decode_frames(container, stream, indices: np.ndarray, size=None, resize: dict | None = None) -> np.ndarray:
    """Decode frames in order, converting (and resizing to `size` = (height, width)) only the wanted ones;
    `(len(indices), H, W, 3)` uint8."""
    wanted = {}
    for i, idx in enumerate(indices.tolist()):
        wanted.setdefault(idx, []).append(i)
    last_needed = int(indices.max())
    out: list[np.ndarray | None] = [None] * len(indices)
    last = None
    for position, frame in enumerate(container.decode(stream)):
        if position in wanted:
            last = frame.to_ndarray(format="rgb24")
            if size is not None and last.shape[:2] != tuple(size):
                resized = Image.fromarray(last).resize((size[1], size[0]), resample=resize["resample"])
                last = np.asarray(resized)
            for slot in wanted[position]:
                out[slot] = last
        if position >= last_needed:
            break
    if last is None:
        raise ValueError("no frame could be decoded")
    missing = sum(o is None for o in out)
    if missing:
        # The container over-reported its frame count: repeat the last decoded frame, visibly.
        warnings.warn(
            f"Video has fewer decodable frames than its metadata says; repeating the last frame {missing} time(s).",
            UserWarning,
            stacklevel=3,
        )
        out = [last if o is None else o for o in out]
    return np.stack(out)


def as_video_clip(video: Any, fps: float = FPS, **load_kwargs) -> VideoClip:
    """Turn a video input into a `VideoClip`: a path (decoded with `load_video`), a `VideoClip`, an array of frames
    `(T, H, W, 3)` / `(T, 3, H, W)` or a list of PIL images / `(H, W, 3)` arrays (taken as sampled at `fps`)."""
    if isinstance(video, VideoClip):
        return video
    if isinstance(video, (str, os.PathLike)):
        return load_video(video, fps=fps, **load_kwargs)
    if hasattr(video, "detach") and hasattr(video, "cpu"):
        video = video.detach().cpu().numpy()
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("Video input is an empty list of frames")
        frames = [np.asarray(frame.convert("RGB") if isinstance(frame, Image.Image) else frame) for frame in video]
        shapes = list(dict.fromkeys(frame.shape for frame in frames))
        if len(shapes) > 1:
            first = next(i for i, frame in enumerate(frames) if frame.shape != shapes[0])
            raise ValueError(
                f"Video frames have different sizes: frame 0 is {shapes[0]} but frame {first} is {frames[first].shape}"
                f" ({len(shapes)} sizes in {len(frames)} frames): resize every frame to one size first"
            )
        video = np.stack(frames)
    if not isinstance(video, np.ndarray) or video.ndim != 4:
        raise ValueError(
            f"Unsupported video input {describe(video)}: expected a file path, a VideoClip, or frames shaped "
            "(T, H, W, 3) / (T, 3, H, W)"
        )
    if video.shape[-1] != 3 and video.shape[1] == 3:
        video = video.transpose(0, 2, 3, 1)
    if video.shape[-1] != 3:
        raise ValueError(
            f"Video frames of shape {video.shape}: expected 3 colour channels, (T, H, W, 3) or (T, 3, H, W)"
        )
    if video.shape[0] == 0:
        raise ValueError("Video input has 0 frames")
    if video.dtype.kind not in "uif":
        raise ValueError(f"Video frames {describe(video)} have dtype {video.dtype}: expected uint8 or float pixels")
    if video.dtype != np.uint8:
        if video.dtype.kind == "f" and video.size and float(video.max()) <= 1.0:
            video = video * 255.0
        video = np.clip(np.round(video), 0, 255).astype(np.uint8)
    check_image_size(video.shape[1], video.shape[2], f"(video frames {describe(video)})")
    return VideoClip(frames=np.ascontiguousarray(video), fps=float(fps))


# ----------------------------------------------------------------------------------------------------------- headers


def check_media_header(
    path: PathLike,
    kind: str,
    max_audio_seconds: float | None = None,
    max_decode_pixels: int | None = MAX_DECODE_PIXELS,
) -> None:
    """Check a media file's budgets from its header alone (nothing decoded), e.g. before loading a model: an audio
    file's sample rate (1 kHz .. 384 kHz) and seconds, an image's or a video's frame pixels.

    Raises:
        FileNotFoundError / ValueError: naming the file, as the loaders would after decoding.
    """
    if kind == "image":
        path = check_file(path, "Image", IMAGE_EXTENSIONS)
        try:
            with Image.open(path) as opened:
                height, width = opened.height, opened.width
        except Exception as err:
            raise ValueError(
                f"Could not read image file {path!r}: it is corrupt or not a valid image ({err})"
            ) from None
        check_decode_pixels(height, width, f"Image {path!r}", max_decode_pixels)
    elif kind == "audio":
        path = check_file(path, "Audio", AUDIO_TRACK_EXTENSIONS)
        seconds, rate = probe_audio(path)
        if rate is not None:
            check_sampling_rate(rate, f"Audio {path!r}")
        check_duration(seconds, repr(path), max_audio_seconds, truncate=False)
    elif kind == "video":
        path = check_file(path, "Video", VIDEO_EXTENSIONS)
        try:
            with av.open(path) as container:
                if not container.streams.video:
                    raise ValueError(f"Video file {path!r} has no video stream")
                context = container.streams.video[0].codec_context
                height, width = context.height, context.width
        except av.error.FFmpegError as err:
            raise ValueError(
                f"Could not open video file {path!r}: it is corrupt or not a valid video ({err})"
            ) from None
        check_decode_pixels(height, width, f"Video {path!r} (frame size)", max_decode_pixels)
    else:
        raise ValueError(f"kind must be 'audio', 'image' or 'video', got {kind!r}")


# ----------------------------------------------------------------------------------------------------------- batches


def _is_leaf(item: Any, kind: str) -> bool:
    if isinstance(item, (str, os.PathLike)) or not isinstance(item, (list, tuple)):
        return True
    if kind == "audio":  # an (array, sampling_rate) tuple, or a plain list of samples
        numbers = (int, float, np.number)
        if len(item) == 2 and isinstance(item[1], numbers) and not isinstance(item[0], (*numbers, str)):
            return True
        return all(isinstance(x, numbers) for x in item)
    if kind == "video":  # a list of frames (PIL images or (H, W, C) arrays) is one video
        return bool(item) and all(isinstance(f, Image.Image) or getattr(f, "ndim", None) == 3 for f in item)
    return False


def flatten_media(items: Any, kind: str) -> list:
    """Flatten media given per prompt (`[[a, b], [c]]`) or flat (`[a, b, c]`, or a single item) into one list.

    `kind` ("image", "audio" or "video") decides what a single item is: an `(array, rate)` tuple is one audio clip,
    a list of frames is one video.
    """
    if items is None:
        return []
    if _is_leaf(items, kind):
        return [items]
    return [leaf for item in items for leaf in flatten_media(item, kind)]


__all__ = [
    "AUDIO_SAMPLING_RATE",
    "IMAGE_EXTENSIONS",
    "MAX_DECODE_PIXELS",
    "VideoClip",
    "as_video_clip",
    "check_decode_pixels",
    "check_image_size",
    "check_media_header",
    "flatten_media",
    "image_size",
    "load_audio",
    "load_image",
    "load_video",
    "probe_video",
    "resample_audio",
    "video_tokens",
]
