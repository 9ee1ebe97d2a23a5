"""Media loading for Qwen2.5-Omni: audio (16 kHz mono float32), images (validated PIL/numpy) and videos (sampled
RGB frames + optional audio track), with one clear error per bad input.

No torchvision, torchcodec or ffmpeg binary needed: audio is decoded with soundfile (PyAV as fallback), videos with
PyAV, images with Pillow; resampling uses `scipy.signal.resample_poly`.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from PIL import Image
from scipy.signal import resample_poly
from transformers.utils import logging

from .image_processing import FPS, FPS_MAX_FRAMES, FPS_MIN_FRAMES, FRAME_FACTOR, sample_frame_indices, smart_nframes

logger = logging.get_logger(__name__)

AUDIO_SAMPLING_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")
# Qwen2-VL's original `smart_resize` refused images whose sides are below its resize factor (patch 14 x merge 2).
MIN_IMAGE_SIDE = 28
MAX_ASPECT_RATIO = 200

PathLike = str | os.PathLike


@dataclass
class VideoClip:
    """A decoded video.

    Attributes:
        frames: `(num_frames, height, width, 3)` uint8 RGB frames (an even number of them, sampled uniformly).
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


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, np.ndarray):
        return f"<array shape={source.shape} dtype={source.dtype}>"
    return f"<{type(source).__name__}>"


def _check_file(path: PathLike, kind: str, extensions: tuple[str, ...]) -> str:
    """Existence, non-emptiness and extension checks shared by all file inputs."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{kind} file not found: {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"{kind} input {path!r} is not a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{kind} file {path!r} is empty (0 bytes)")
    ext = Path(path).suffix.lower()
    if ext not in extensions:
        raise ValueError(
            f"Unsupported {kind.lower()} format {ext or '(no extension)'!r} for {path!r}: expected one of {', '.join(extensions)}"
        )
    return path


# ----------------------------------------------------------------------------------------------------------- audio


def resample_audio(waveform: np.ndarray, orig_rate: int, target_rate: int = AUDIO_SAMPLING_RATE) -> np.ndarray:
    """Polyphase resampling of a mono `(samples,)` signal; returns float32 `(ceil(samples * target / orig),)`."""
    if orig_rate <= 0:
        raise ValueError(f"Sampling rate must be positive, got {orig_rate}")
    orig_rate, target_rate = int(orig_rate), int(target_rate)
    if orig_rate == target_rate:
        return np.asarray(waveform, dtype=np.float32)
    g = math.gcd(orig_rate, target_rate)
    return resample_poly(np.asarray(waveform, dtype=np.float64), target_rate // g, orig_rate // g).astype(np.float32)


def _to_mono_float(data: np.ndarray, source: str) -> np.ndarray:
    """Integer PCM → [-1, 1] floats; `(samples, channels)` or `(channels, samples)` → mono by averaging."""
    data = np.asarray(data)
    if data.dtype.kind == "i":
        data = data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))
    elif data.dtype.kind == "u":
        half = float(2 ** (8 * data.dtype.itemsize - 1))
        data = (data.astype(np.float64) - half) / half
    elif data.dtype.kind != "f":
        raise ValueError(f"Audio {source} has dtype {data.dtype}: expected float or integer PCM samples")
    if data.ndim == 2:
        # The channel axis is the short one (at most 8 channels); (samples, channels) when ambiguous.
        channel_axis = 0 if data.shape[0] <= 8 < data.shape[1] else 1
        data = data.mean(axis=channel_axis)
    elif data.ndim != 1:
        raise ValueError(f"Audio {source} has shape {data.shape}: expected (samples,) or (samples, channels)")
    if data.size == 0:
        raise ValueError(f"Audio {source} is empty (0 samples)")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"Audio {source} contains NaN or infinite samples")
    return data.astype(np.float32)


def _decode_audio_av(path: str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file with PyAV: `(channels, samples)` float32 and its rate."""
    with av.open(path) as container:
        if not container.streams.audio:
            raise LookupError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
        rate = stream.rate
    if not chunks:
        return np.zeros((1, 0), np.float32), rate
    return np.concatenate(chunks, axis=1), rate


def load_audio(
    audio: Any,
    sampling_rate: int | None = None,
    target_sampling_rate: int = AUDIO_SAMPLING_RATE,
) -> np.ndarray:
    """Load one audio input as a `(samples,)` float32 mono waveform at `target_sampling_rate` (16 kHz).

    Args:
        audio: a path (.wav/.flac/.mp3/.ogg), a numpy array / torch tensor / list of samples (`(samples,)`,
            `(samples, channels)` or `(channels, samples)`), an `(array, sampling_rate)` tuple, or a
            `{"array": ..., "sampling_rate": ...}` dict (the `datasets` audio format).
        sampling_rate: rate of an array input; assumed to be `target_sampling_rate` when not given.
        target_sampling_rate: output rate.

    Raises:
        FileNotFoundError: missing file. ValueError: empty/corrupt/unsupported file, empty or non-finite arrays.
    """
    if isinstance(audio, dict) and "array" in audio:
        return load_audio(audio["array"], audio.get("sampling_rate", sampling_rate), target_sampling_rate)
    if isinstance(audio, tuple) and len(audio) == 2 and np.isscalar(audio[1]):
        return load_audio(audio[0], int(audio[1]), target_sampling_rate)
    if isinstance(audio, (str, os.PathLike)):
        path = _check_file(audio, "Audio", AUDIO_EXTENSIONS)
        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)  # (samples, channels)
        except Exception:
            try:
                data, rate = _decode_audio_av(path)
                data = data.T
            except Exception as err:
                raise ValueError(
                    f"Could not decode audio file {path!r}: it is corrupt or not a valid audio file ({err})"
                ) from None
        waveform = _to_mono_float(data.mean(axis=1) if data.shape[0] else data.reshape(-1), repr(path))
        return resample_audio(waveform, rate, target_sampling_rate)
    if hasattr(audio, "detach") and hasattr(audio, "cpu"):  # torch tensor
        audio = audio.detach().cpu().float().numpy()
    if isinstance(audio, (list, np.ndarray)):
        waveform = _to_mono_float(np.asarray(audio), _describe(np.asarray(audio)))
        rate = target_sampling_rate if sampling_rate is None else int(sampling_rate)
        return resample_audio(waveform, rate, target_sampling_rate)
    raise ValueError(
        f"Unsupported audio input {_describe(audio)}: expected a file path, a numpy array of samples, "
        "an (array, sampling_rate) tuple or a {'array', 'sampling_rate'} dict"
    )


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


def load_image(image: Any, min_side: int = MIN_IMAGE_SIDE) -> Image.Image | np.ndarray:
    """Load and validate one image. Paths are opened with Pillow; PIL images and arrays are validated and returned
    unchanged (the image processor does the RGB conversion, exactly as transformers does).

    Images larger than the processor's `max_pixels` are fine: the processor resizes them down.
    """
    if isinstance(image, (str, os.PathLike)):
        path = _check_file(image, "Image", IMAGE_EXTENSIONS)
        try:
            with Image.open(path) as opened:
                opened.load()
                image = (
                    opened.copy() if opened.mode in ("RGB", "RGBA", "L", "LA", "P", "I;16") else opened.convert("RGB")
                )
        except Image.DecompressionBombError as err:
            raise ValueError(f"Image file {path!r} is too large to decode safely: {err}") from None
        except Exception as err:
            raise ValueError(
                f"Could not decode image file {path!r}: it is corrupt or not a valid image ({err})"
            ) from None
        check_image_size(image.height, image.width, repr(path), min_side)
        return image
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch tensor
        image = image.detach().cpu().numpy()
    if isinstance(image, (Image.Image, np.ndarray)):
        height, width = image_size(image)
        check_image_size(height, width, _describe(image), min_side)
        return image
    raise ValueError(f"Unsupported image input {_describe(image)}: expected a file path, a PIL image or a numpy array")


# ----------------------------------------------------------------------------------------------------------- video


def _count_frames(container, stream) -> int:
    """Frame count from the container metadata, or by demuxing packets (no decoding) when it is missing."""
    if stream.frames:
        return int(stream.frames)
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def load_video(
    video: PathLike,
    fps: float = FPS,
    min_frames: int = FPS_MIN_FRAMES,
    max_frames: int = FPS_MAX_FRAMES,
    with_audio: bool = False,
    audio_sampling_rate: int = AUDIO_SAMPLING_RATE,
) -> VideoClip:
    """Decode a video file with PyAV: `fps` frames per second sampled uniformly (Qwen2.5-Omni's `smart_nframes`:
    at least `min_frames`, at most `max_frames`, an even count), plus its audio track (16 kHz mono) if `with_audio`.

    Raises:
        FileNotFoundError: missing file. ValueError: empty, corrupt or unsupported file, no video stream, too few
        frames, or no audio track when `with_audio=True`.
    """
    path = _check_file(video, "Video", VIDEO_EXTENSIONS)
    try:
        container = av.open(path)
    except Exception as err:
        raise ValueError(f"Could not open video file {path!r}: it is corrupt or not a valid video ({err})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"Video file {path!r} has no video stream")
        stream = container.streams.video[0]
        video_fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        has_audio = bool(container.streams.audio)
        if with_audio and not has_audio:
            raise ValueError(
                f"Video file {path!r} has no audio track, but its audio was requested (use_audio_in_video=True): "
                "pass use_audio_in_video=False or a video with sound"
            )
        try:
            total = _count_frames(container, stream)
            if video_fps <= 0:
                duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
                video_fps = total / duration if duration > 0 else FPS
            if total < FRAME_FACTOR:
                raise ValueError(f"Video file {path!r} has {total} frame(s): at least {FRAME_FACTOR} are needed")
            nframes = smart_nframes(total, video_fps, fps=fps, min_frames=min_frames, max_frames=max_frames)
            indices = sample_frame_indices(total, nframes)
            frames = _decode_frames(container, stream, indices)
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"Could not decode video file {path!r}: it is corrupt ({err})") from None
    audio = _load_video_audio(path, audio_sampling_rate) if with_audio else None
    sample_fps = nframes / max(total, 1e-6) * video_fps
    return VideoClip(frames=frames, fps=sample_fps, audio=audio, source=path)


def _decode_frames(container, stream, indices: np.ndarray) -> np.ndarray:
    """Decode frames in order, converting only the wanted ones; `(len(indices), H, W, 3)` uint8."""
    wanted = {}
    for i, idx in enumerate(indices.tolist()):
        wanted.setdefault(idx, []).append(i)
    last_needed = int(indices.max())
    out: list[np.ndarray | None] = [None] * len(indices)
    last = None
    for position, frame in enumerate(container.decode(stream)):
        if position in wanted:
            last = frame.to_ndarray(format="rgb24")
            for slot in wanted[position]:
                out[slot] = last
        if position >= last_needed:
            break
    if last is None:
        raise ValueError("no frame could be decoded")
    missing = sum(o is None for o in out)
    if missing:
        # The container over-reported its frame count: repeat the last decoded frame.
        logger.warning(
            f"Video has fewer decodable frames than its metadata says; repeating the last frame {missing} time(s)."
        )
        out = [last if o is None else o for o in out]
    return np.stack(out)


def _load_video_audio(path: str, target_sampling_rate: int) -> np.ndarray:
    try:
        data, rate = _decode_audio_av(path)
    except Exception as err:
        raise ValueError(f"Could not decode the audio track of video file {path!r} ({err})") from None
    if data.shape[1] == 0:
        raise ValueError(f"The audio track of video file {path!r} is empty (0 samples)")
    return resample_audio(_to_mono_float(data.mean(axis=0), repr(path)), rate, target_sampling_rate)


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
        video = np.stack(
            [np.asarray(frame.convert("RGB") if isinstance(frame, Image.Image) else frame) for frame in video]
        )
    if not isinstance(video, np.ndarray) or video.ndim != 4:
        raise ValueError(
            f"Unsupported video input {_describe(video)}: expected a file path, a VideoClip, or frames shaped "
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
    if video.dtype != np.uint8:
        if video.dtype.kind == "f" and video.size and float(video.max()) <= 1.0:
            video = video * 255.0
        video = np.clip(np.round(video), 0, 255).astype(np.uint8)
    check_image_size(video.shape[1], video.shape[2], f"(video frames {_describe(video)})")
    return VideoClip(frames=np.ascontiguousarray(video), fps=float(fps))


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
    "VideoClip",
    "as_video_clip",
    "check_image_size",
    "flatten_media",
    "image_size",
    "load_audio",
    "load_image",
    "load_video",
    "resample_audio",
]
