"""Small synthetic media (audio, images, videos) for tests, the demo and benchmarks. Deterministic, offline.

Example:

```python
>>> from omni_hf.testing.media import write_image, write_video, write_wav
>>> wav = write_wav("/tmp/tones.wav", duration=2.0)                       # 16 kHz mono tones
>>> png = write_image("/tmp/shapes.png", width=224, height=168)           # coloured shapes
>>> mp4 = write_video("/tmp/clip.mp4", duration=2.0, with_audio=True)     # 112x84 mpeg4 + aac
```
"""

import os
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw


def make_waveform(
    duration: float = 1.0,
    sampling_rate: int = 16000,
    channels: int = 1,
    kind: str = "tones",
    seed: int = 0,
) -> np.ndarray:
    """A float32 test signal in [-1, 1]: `(samples,)` for mono, `(samples, channels)` otherwise.

    `kind="tones"`: a sequence of short sine tones (440, 660, 330, 880 Hz ...) with a little noise;
    `kind="noise"`: white noise at 0.3 amplitude; `kind="silence"`: zeros.
    """
    num_samples = max(1, int(round(duration * sampling_rate)))
    t = np.arange(num_samples) / sampling_rate
    rng = np.random.default_rng(seed)
    if kind == "tones":
        freqs = np.array([440.0, 660.0, 330.0, 880.0, 550.0])
        segment = np.minimum((t / 0.25).astype(np.int64), 10**9) % len(freqs)
        signal = 0.5 * np.sin(2 * np.pi * freqs[segment] * t) + 0.01 * rng.standard_normal(num_samples)
    elif kind == "noise":
        signal = 0.3 * rng.standard_normal(num_samples)
    elif kind == "silence":
        signal = np.zeros(num_samples)
    else:
        raise ValueError(f"kind must be 'tones', 'noise' or 'silence', got {kind!r}")
    signal = np.clip(signal, -1.0, 1.0).astype(np.float32)
    if channels == 1:
        return signal
    # Other channels: the same signal, slightly attenuated, so a downmix stays close to the mono signal.
    return np.stack([signal * (1.0 - 0.1 * c) for c in range(channels)], axis=1)


def write_wav(
    path: str | os.PathLike,
    duration: float = 1.0,
    sampling_rate: int = 16000,
    channels: int = 1,
    kind: str = "tones",
    seed: int = 0,
) -> str:
    """Write `make_waveform(...)` to `path`; the format follows the extension (.wav, .flac, .ogg, .mp3)."""
    path = os.fspath(path)
    data = make_waveform(duration, sampling_rate, channels, kind, seed)
    ext = os.path.splitext(path)[1].lower()
    formats = {
        ".wav": ("WAV", "PCM_16"),
        ".flac": ("FLAC", "PCM_16"),
        ".ogg": ("OGG", "VORBIS"),
        ".mp3": ("MP3", None),
    }
    if ext not in formats:
        raise ValueError(f"write_wav: unsupported extension {ext!r} for {path!r}; use one of {sorted(formats)}")
    fmt, subtype = formats[ext]
    sf.write(path, data, sampling_rate, format=fmt, subtype=subtype)
    return path


def make_image(width: int = 224, height: int = 168, seed: int = 0) -> Image.Image:
    """An RGB PIL image with a red circle, a blue square and a green triangle on a light background."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (245, 245, 240))
    draw = ImageDraw.Draw(image)
    jitter = rng.integers(0, max(1, min(width, height) // 10), size=6)
    w, h = width, height
    draw.ellipse([w * 0.05 + jitter[0], h * 0.1, w * 0.35 + jitter[0], h * 0.5 + jitter[1]], fill=(220, 40, 40))
    draw.rectangle([w * 0.55, h * 0.1 + jitter[2], w * 0.9, h * 0.55 + jitter[2]], fill=(40, 60, 210))
    draw.polygon([(w * 0.2, h * 0.95), (w * 0.45 + jitter[3], h * 0.55), (w * 0.7, h * 0.95)], fill=(40, 170, 60))
    # A smooth gradient stripe, so resizing has something non-trivial to interpolate.
    stripe = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((max(1, h // 12), 1, 3), np.float32)
    image.paste(Image.fromarray(stripe.astype(np.uint8)), (0, 0))
    return image


def write_image(path: str | os.PathLike, width: int = 224, height: int = 168, seed: int = 0) -> str:
    """Write `make_image(...)` to `path` (format from the extension, e.g. .png or .jpg)."""
    path = os.fspath(path)
    make_image(width, height, seed).save(path)
    return path


def make_frames(num_frames: int = 8, width: int = 112, height: int = 84, seed: int = 0) -> np.ndarray:
    """`(num_frames, height, width, 3)` uint8 frames: a coloured box moving left to right over a gradient."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack([xs * 255 // max(1, width - 1), ys * 255 // max(1, height - 1), np.full_like(xs, 96)], -1)
    frames = np.repeat(background[None].astype(np.uint8), num_frames, axis=0)
    box = max(4, min(width, height) // 4)
    color = rng.integers(0, 256, size=3, dtype=np.uint8)
    for i in range(num_frames):
        x0 = int((width - box) * i / max(1, num_frames - 1))
        y0 = (height - box) // 2
        frames[i, y0 : y0 + box, x0 : x0 + box] = color
    return frames


def write_video(
    path: str | os.PathLike,
    duration: float = 2.0,
    fps: int = 10,
    width: int = 112,
    height: int = 84,
    with_audio: bool = True,
    audio_sampling_rate: int = 22050,
    audio_channels: int = 2,
    audio_codec: str = "aac",
    seed: int = 0,
) -> str:
    """Write a short mp4 (mpeg4 video) with `make_frames` and, if `with_audio`, a tone track (aac or mp3).

    The audio track deliberately uses another rate (22.05 kHz) and stereo, so readers must resample and downmix.
    """
    path = os.fspath(path)
    num_frames = max(1, int(round(duration * fps)))
    frames = make_frames(num_frames, width, height, seed)
    with av.open(path, mode="w") as container:
        vstream = container.add_stream("mpeg4", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.codec_context.bit_rate = 400_000
        astream = None
        if with_audio:
            astream = container.add_stream(audio_codec, rate=audio_sampling_rate)
            astream.layout = "stereo" if audio_channels == 2 else "mono"
        for frame in frames:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, duration, audio_sampling_rate, audio_channels, seed)
    return path


def _encode_audio(container, stream, duration: float, sampling_rate: int, channels: int, seed: int) -> None:
    signal = make_waveform(duration, sampling_rate, channels, "tones", seed)
    planar = np.ascontiguousarray(signal.reshape(len(signal), -1).T, dtype=np.float32)  # (channels, samples)
    frame_size = stream.codec_context.frame_size or 1024
    layout = "stereo" if channels == 2 else "mono"
    for start in range(0, planar.shape[1], frame_size):
        chunk = planar[:, start : start + frame_size]
        if chunk.shape[1] < frame_size:
            chunk = np.pad(chunk, ((0, 0), (0, frame_size - chunk.shape[1])))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
        frame.sample_rate = sampling_rate
        frame.pts = start
        frame.time_base = Fraction(1, sampling_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


__all__ = ["make_frames", "make_image", "make_waveform", "write_image", "write_video", "write_wav"]


def espeak_speech(text: str, voice: str = "en", speed: int = 160) -> tuple[np.ndarray, int]:
    """Real synthetic speech from Debian's `espeak-ng`: `(samples,)` float32 mono and its sampling rate (22050)."""
    import shutil
    import subprocess
    import tempfile

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: `apt-get install espeak-ng` (the speech tests need it)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "speech.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", path, text], check=True, capture_output=True)
        audio, rate = sf.read(path, dtype="float32")
    return audio, int(rate)
