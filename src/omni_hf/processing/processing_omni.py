"""`OmniProcessor`: text + audio + image + video inputs for the Qwen2.5-Omni Thinker.

Same outputs and token layout as transformers' `Qwen2_5OmniProcessor`, without torchvision/torchcodec, and with audio
features padded only to the longest clip of the batch (the reference pads every clip to 300 s before the STFT).

Example:

```python
>>> from omni_hf.processing import OmniProcessor
>>> processor = OmniProcessor.from_pretrained("path/to/checkpoint")
>>> messages = [{"role": "user", "content": [
...     {"type": "audio", "audio": "question.wav"}, {"type": "image", "image": "photo.png"},
...     {"type": "text", "text": "Answer the question about the picture."}]}]
>>> inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
...                                        return_dict=True, return_tensors="pt")
>>> sorted(inputs.keys())
['attention_mask', 'feature_attention_mask', 'image_grid_thw', 'input_features', 'input_ids', 'pixel_values']
```
"""

import os
import re
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging
from transformers.utils.chat_template_utils import render_jinja_template

from ..common.remote_code import auto_map_entry, write_code_set
from ..common.staged_save import check_complete_if_local, staged_save
from ..common.tmrope import TMRoPETokens, audio_token_lengths, get_rope_index, interleave_video_audio
from .audio import MAX_AUDIO_SECONDS, MIN_AUDIO_SAMPLES, describe, load_audio
from .budgets import CHARS_PER_TOKEN_BOUND, check_text_chars
from .chat_utils import (
    DEFAULT_SYSTEM_PROMPT,
    collect_media,
    default_chat_template,
    normalize_conversations,
    with_system_prompt,
)
from .feature_extraction import default_feature_extractor, extract_audio_features
from .image_processing import (
    FPS,
    FPS_MAX_FRAMES,
    FPS_MIN_FRAMES,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    default_image_processor,
    preprocess_videos,
    smart_resize,
)
from .literal_text import control_token_strings, protect_text, restore_text, tokenize_with_literals
from .media import VideoClip, as_video_clip, flatten_media, image_size, load_image
from .waveform import SPEECH_SAMPLING_RATE, Waveform

logger = logging.get_logger(__name__)

# Fallback placeholder strings when the tokenizer does not name them (the official tokenizer's strings).
OMNI_NAMED_TOKENS = {
    "audio_token": "<|AUDIO|>",
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}


def _sane_length(length) -> int | None:
    """A tokenizer's `model_max_length`, or None for transformers' "no limit" placeholder (~1e30)."""
    return int(length) if isinstance(length, int) and 0 < length < 10**8 else None


def _warn_raw_audio_without_rate(audio_inputs: list, assumed: int) -> None:
    """transformers' rule for a raw array without `sampling_rate` (its feature extractors): take it at the feature
    extractor's rate, and warn. Named here per input, since a wrong rate silently changes the audio token count."""
    raw = [i for i, a in enumerate(audio_inputs) if isinstance(a, (np.ndarray, torch.Tensor)) or _is_sample_list(a)]
    if raw:
        logger.warning(
            f"audio[{', '.join(map(str, raw))}] {'is a raw array' if len(raw) == 1 else 'are raw arrays'} without "
            f"`sampling_rate`: taken at {assumed} Hz, as transformers' processors do. Pass `sampling_rate=` (or an "
            "(array, rate) tuple) to be sure: at another rate the audio token count and the features are wrong."
        )


def _is_sample_list(value) -> bool:
    return isinstance(value, list) and len(value) > 0 and isinstance(value[0], (int, float))


class OmniProcessor(ProcessorMixin):
    r"""Processor for the Qwen2.5-Omni Thinker: tokenizer + Whisper feature extractor + Qwen2-VL image processor, and
    video handling (PyAV decoding, numpy patching) without torchvision.

    Args:
        image_processor (`Qwen2VLImageProcessorPil`, *optional*): defaults to the official settings
            (min/max pixels 3136 / 12845056, patch 14, temporal patch 2, merge 2).
        feature_extractor (`WhisperFeatureExtractor`, *optional*): defaults to 128 mels, 16 kHz, n_fft 400, hop 160.
        tokenizer (`Qwen2Tokenizer`): must know the Omni special tokens.
        chat_template (`str`, *optional*): defaults to the official Qwen2.5-Omni template.
        fps (`float`, *optional*, defaults to 2.0): frames per second sampled from video files.
        video_min_frames / video_max_frames (`int`, *optional*, defaults to 4 / 768): frame-count limits.
        video_min_pixels / video_max_pixels (`int`, *optional*, defaults to 128*28*28 / 768*28*28): per-frame limits.
        position_id_per_seconds (`int`, *optional*, defaults to 25): TMRoPE ids per second (one per 40 ms).
        seconds_per_chunk (`float`, *optional*, defaults to 2): audio/video interleaving chunk for audio-in-video.
        default_system_prompt (`str`, *optional*): system message inserted by `apply_chat_template` when the
            conversation has none; the official speech-capable prompt by default, `None` to use the template's own.
        padding_side (`str`, *optional*, defaults to `"left"`): side where batches are padded.
        max_length (`int`, *optional*): prompts longer than this raise a `ValueError` (None: no limit).
    """

    def __init__(
        self,
        image_processor=None,
        feature_extractor=None,
        tokenizer=None,
        chat_template: str | None = None,
        fps: float = FPS,
        video_min_frames: int = FPS_MIN_FRAMES,
        video_max_frames: int = FPS_MAX_FRAMES,
        video_min_pixels: int = VIDEO_MIN_PIXELS,
        video_max_pixels: int = VIDEO_MAX_PIXELS,
        position_id_per_seconds: int = 25,
        seconds_per_chunk: float = 2,
        default_system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        padding_side: str = "left",
        max_length: int | None = None,
    ):
        if tokenizer is None:
            raise ValueError("OmniProcessor needs a tokenizer (a Qwen2 tokenizer with the Omni special tokens).")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.fps = fps
        self.video_min_frames = video_min_frames
        self.video_max_frames = video_max_frames
        self.video_min_pixels = video_min_pixels
        self.video_max_pixels = video_max_pixels
        self.position_id_per_seconds = position_id_per_seconds
        self.seconds_per_chunk = seconds_per_chunk
        self.default_system_prompt = default_system_prompt
        self.padding_side = padding_side
        self.max_length = max_length
        image_processor = image_processor if image_processor is not None else default_image_processor()
        feature_extractor = feature_extractor if feature_extractor is not None else default_feature_extractor()
        chat_template = chat_template if chat_template is not None else default_chat_template()
        super().__init__(image_processor, feature_extractor, tokenizer, chat_template=chat_template)
        for name, default in OMNI_NAMED_TOKENS.items():
            token = getattr(tokenizer, name, None) or default
            token_id = tokenizer.convert_tokens_to_ids(token)
            if (
                token_id is None
                or token_id == tokenizer.unk_token_id
                or tokenizer.convert_ids_to_tokens(token_id) != token
            ):
                raise ValueError(f"The tokenizer does not know the special token {token!r} ({name}).")
            setattr(self, name, token)
            setattr(self, f"{name}_id", token_id)

    # ------------------------------------------------------------------------------------------------ properties

    @property
    def merge_size(self) -> int:
        return self.image_processor.merge_size

    @property
    def rope_tokens(self) -> TMRoPETokens:
        """Token ids and timing constants for `omni_hf.common.tmrope.get_rope_index`."""
        return TMRoPETokens(
            audio_token_id=self.audio_token_id,
            image_token_id=self.image_token_id,
            video_token_id=self.video_token_id,
            audio_start_token_id=self.audio_bos_token_id,
            audio_end_token_id=self.audio_eos_token_id,
            vision_start_token_id=self.vision_bos_token_id,
            vision_end_token_id=self.vision_eos_token_id,
            spatial_merge_size=self.merge_size,
            position_id_per_seconds=self.position_id_per_seconds,
            seconds_per_chunk=self.seconds_per_chunk,
        )

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + ["input_features", "feature_attention_mask"]
        names += list(self.image_processor.model_input_names)
        names += ["pixel_values_videos", "video_grid_thw", "video_second_per_grid"]
        return list(dict.fromkeys(names))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`ProcessorMixin.from_pretrained`, refusing a local folder left half-written by an interrupted save."""
        check_complete_if_local(pretrained_model_name_or_path, kwargs.get("subfolder", ""))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """`ProcessorMixin.save_pretrained`, staged (`omni_hf.common.staged_save`: written whole, then moved in), plus
        `auto_map` and a flat code set so that `AutoProcessor.from_pretrained(folder, trust_remote_code=True)` works
        without omni_hf."""
        if push_to_hub:
            kwargs.setdefault("repo_id", os.path.basename(os.path.abspath(save_directory)))
        self.auto_map = {"AutoProcessor": auto_map_entry(type(self))}
        with staged_save(save_directory, "processor") as stage:
            result = super().save_pretrained(stage, push_to_hub=push_to_hub, **kwargs)
            write_code_set([type(self)], stage)
            return result

    # ------------------------------------------------------------------------------------------------ __call__

    def __call__(
        self,
        text: str | list[str] | None = None,
        images: Any = None,
        videos: Any = None,
        audio: Any = None,
        *,
        use_audio_in_video: bool = False,
        sampling_rate: int | None = None,
        fps: float | list[float] | None = None,
        padding: bool | str = True,
        padding_side: str | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        audio_padding: str = "longest",
        long_audio: str = "error",
        return_position_ids: bool = False,
        return_tensors: str | None = None,
        text_literals: list[str] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Tokenize prompts and process their media; each placeholder (`<|AUDIO|>`, `<|IMAGE|>`, `<|VIDEO|>`) in the
        text is expanded to as many tokens as its media item yields. Media are consumed in prompt order across the batch.

        Args:
            text: one prompt or a batch (e.g. from `apply_chat_template(..., tokenize=False)`).
            images: images (paths, PIL images, arrays), flat or nested per prompt.
            videos: videos (paths, `VideoClip`s, `(T, H, W, 3)` frame arrays or lists of frames).
            audio: audio clips (paths, arrays, `(array, rate)` tuples); arrays are taken at `sampling_rate` (16 kHz
                when not given) and resampled to 16 kHz.
            use_audio_in_video: interleave each video with its own audio track (which takes the audio slot where
                the video appears; standalone clips fill the `<|AUDIO|>` slots).
            fps: frames per second for video files, or for frame arrays (a list gives one value per video).
            padding / padding_side: pad the batch to its longest prompt, on the left by default.
            max_length: raise if a prompt is longer (defaults to the processor's `max_length`).
            audio_padding: `"longest"` (pad audio features to the longest clip of the batch) or `"max_length"` (pad
                every clip to 300 s like the reference); valid frames are identical either way.
            long_audio: audio (or, with `use_audio_in_video`, a video) longer than the 300 s the audio encoder takes
                at once: `"error"` (refused from the header, before decoding) or `"truncate"` (the first 300 s are
                kept, frames and audio alike, with a warning saying so).
            return_position_ids: also return TMRoPE `position_ids` `(3, batch, seq)` and `rope_deltas` `(batch, 1)`.
            return_tensors: `"pt"`, `"np"` or None (lists / arrays, like the reference).
            text_literals: texts that markers `\ue000{i}\ue001` in `text` stand for, tokenized as plain text
                (special-token strings inside them split into ordinary tokens); set by `apply_chat_template`.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` `(batch, seq)`; `input_features` `(num_audio, 128,
            frames)`, `feature_attention_mask` `(num_audio, frames)`; `pixel_values` `(num_patches, 1176)`,
            `image_grid_thw` `(num_images, 3)`; `pixel_values_videos` `(num_patches, 1176)`, `video_grid_thw`
            `(num_videos, 3)`, `video_second_per_grid` `(num_videos,)` — each only when its modality is present.
        """
        use_audio_in_video = use_audio_in_video or kwargs.pop("load_audio_from_video", False)
        if kwargs:
            raise TypeError(f"OmniProcessor.__call__ got unexpected keyword arguments: {sorted(kwargs)}")
        if text is None:
            raise ValueError("OmniProcessor needs `text` (prompts with media placeholders, see apply_chat_template).")
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("`text` must be a string or a non-empty list of strings.")
        image_inputs, video_inputs = flatten_media(images, "image"), flatten_media(videos, "video")
        audio_inputs = flatten_media(audio, "audio")
        if long_audio not in ("error", "truncate"):
            raise ValueError(f"long_audio must be 'error' or 'truncate', got {long_audio!r}")
        truncate = long_audio == "truncate"
        max_seconds = float(getattr(self.feature_extractor, "chunk_length", MAX_AUDIO_SECONDS))
        limit = max_length if max_length is not None else self.max_length
        # budgets before any tokenizing or decoding: characters of text, and the tokens of each image / video
        # (from its header) against `limit`, or else the tokenizer's context
        context = limit if limit is not None else _sane_length(getattr(self.tokenizer, "model_max_length", None))
        max_chars = None if context is None else CHARS_PER_TOKEN_BOUND * context
        check_text_chars(list(texts) + list(text_literals or []), max_chars, "The prompt")
        self._check_counts(texts, len(image_inputs), len(video_inputs), len(audio_inputs))
        image_list = [load_image(im) for im in image_inputs]
        self._check_image_tokens(image_list, limit)
        clips = self._load_videos(video_inputs, fps, use_audio_in_video, (max_seconds, truncate), context)
        if sampling_rate is None:
            _warn_raw_audio_without_rate(audio_inputs, self.feature_extractor.sampling_rate)
        standalone = [load_audio(a, sampling_rate, max_seconds=max_seconds, truncate=truncate) for a in audio_inputs]
        audio_slots = self._audio_slots(texts, clips, standalone, use_audio_in_video)
        names = self._audio_slots(texts, clips, [describe(a) for a in audio_inputs], use_audio_in_video, names=True)
        for name, waveform in zip(names, audio_slots):
            if len(waveform) < MIN_AUDIO_SAMPLES:
                raise ValueError(
                    f"Audio {name} is too short: {len(waveform) / 16:.1f} ms at 16 kHz; one audio token needs "
                    f"more than {(MIN_AUDIO_SAMPLES - 1) / 16:.0f} ms ({MIN_AUDIO_SAMPLES} samples)"
                )

        data: dict[str, Any] = {}
        num_audio_tokens: list[int] = []
        if audio_slots:
            features, mask = extract_audio_features(self.feature_extractor, audio_slots, audio_padding)
            data["input_features"], data["feature_attention_mask"] = features, mask
            num_audio_tokens = audio_token_lengths(torch.from_numpy(mask.sum(-1).astype(np.int64))).tolist()
        if image_list:
            out = self.image_processor(images=image_list, return_tensors="np")
            data["pixel_values"], data["image_grid_thw"] = out["pixel_values"], out["image_grid_thw"]
        if clips:
            out = preprocess_videos(
                [c.frames for c in clips], self.image_processor, self.video_min_pixels, self.video_max_pixels
            )
            data.update(out)
            data["video_second_per_grid"] = np.asarray(
                [self.image_processor.temporal_patch_size / c.fps for c in clips], dtype=np.float32
            )

        rows = tokenize_with_literals(self.tokenizer, texts, text_literals, add_special_tokens=add_special_tokens)
        rows = self._expand_rows(rows, data, num_audio_tokens, use_audio_in_video)
        for i, row in enumerate(rows):
            if limit is not None and len(row) > limit:
                raise ValueError(
                    f"Prompt #{i} has {len(row)} tokens after media expansion, more than max_length={limit}."
                )
        input_ids, attention_mask = self._pad(rows, padding, padding_side or self.padding_side)
        data = {"input_ids": input_ids, "attention_mask": attention_mask, **data}
        if return_position_ids:
            data.update(self._position_ids(data, use_audio_in_video))
        if return_tensors is None:
            for key in ("input_ids", "attention_mask"):
                if isinstance(data[key], np.ndarray):
                    data[key] = data[key].tolist()
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ------------------------------------------------------------------------------------------------ helpers

    def _load_videos(
        self, videos: list, fps, use_audio_in_video: bool, long_audio=(MAX_AUDIO_SECONDS, False), max_tokens=None
    ) -> list[VideoClip]:
        """Videos as `VideoClip`s; `long_audio` = (longest audio in seconds, cut instead of refusing)."""
        ip = self.image_processor
        resize = None
        if ip.do_resize:  # frames are resized while decoding, exactly as `preprocess_video` would afterwards
            factor, resample = ip.patch_size * ip.merge_size, ip.resample
            resize = {"min_pixels": self.video_min_pixels, "max_pixels": self.video_max_pixels}
            resize |= {"factor": factor, "resample": resample}
        fps_list = list(fps) if isinstance(fps, (list, tuple)) else [fps] * len(videos)
        if len(fps_list) != len(videos):
            raise ValueError(f"Got {len(fps_list)} fps values for {len(videos)} videos.")
        clips = []
        for i, (video, video_fps) in enumerate(zip(videos, fps_list)):
            clip = as_video_clip(
                video,
                fps=video_fps if video_fps is not None else self.fps,
                min_frames=self.video_min_frames,
                max_frames=self.video_max_frames,
                with_audio=use_audio_in_video,
                resize=resize,
                max_seconds=long_audio[0] if use_audio_in_video else None,
                truncate=long_audio[1],
                max_tokens=max_tokens,
            )
            if use_audio_in_video and clip.audio is None:
                raise ValueError(
                    f"Video #{i} ({clip.source}) has no audio track, but use_audio_in_video=True needs one: pass a video "
                    "file with sound or a VideoClip with `audio`, or use_audio_in_video=False."
                )
            clips.append(clip)
        return clips

    def _check_counts(self, texts: list[str], n_images: int, n_videos: int, n_audio: int) -> None:
        for token, count, name in (
            (self.image_token, n_images, "images"),
            (self.video_token, n_videos, "videos"),
            (self.audio_token, n_audio, "audio clips"),
        ):
            found = sum(t.count(token) for t in texts)
            if found != count:
                hint = ""
                if found == 0:  # plain text with media, e.g. pipeline(images=..., text="Describe")
                    bos, eos = (
                        ("<|audio_bos|>", "<|audio_eos|>")
                        if name == "audio clips"
                        else ("<|vision_bos|>", "<|vision_eos|>")
                    )
                    kind = {"images": "image", "videos": "video", "audio clips": "audio"}[name]
                    hint = (
                        f" Plain text has none: pass a chat, e.g. text=[{{'role': 'user', 'content': [{{'type': "
                        f"'{kind}', '{kind}': ...}}, {{'type': 'text', 'text': 'Describe'}}]}}] (the chat template "
                        f"places them), or write {bos}{token}{eos} in the text where each one goes."
                    )
                raise ValueError(
                    f"The prompts contain {found} {token} placeholder(s) but {count} {name} were given: "
                    f"each {name[:-1] if name != 'audio clips' else 'audio clip'} needs exactly one placeholder.{hint}"
                )

    def _check_image_tokens(self, images: list, limit: int | None) -> None:
        """Refuse, before patching, an image that alone takes more than `limit` tokens (sizes only)."""
        ip = self.image_processor
        if limit is None or not ip.do_resize:
            return
        factor = ip.patch_size * ip.merge_size
        for i, image in enumerate(images):
            height, width = image_size(image)
            h, w = smart_resize(height, width, factor, ip.size.shortest_edge, ip.size.longest_edge)
            tokens = h * w // factor**2
            if tokens > limit:
                raise ValueError(
                    f"Image #{i} ({width}x{height}, resized to {w}x{h}) takes {tokens} tokens, more than "
                    f"max_length={limit}: downscale it or lower the image processor's max_pixels"
                )

    def _audio_slots(self, texts, clips, standalone, use_audio_in_video: bool, names: bool = False) -> list:
        """Audio inputs in prompt order; with `use_audio_in_video` a video's track fills the slot where it appears
        (`names=True`: `standalone` holds names, and a video's slot gets its source's)."""
        if not use_audio_in_video:
            return standalone
        pattern = re.compile(f"{re.escape(self.audio_token)}|{re.escape(self.video_token)}")
        audio_iter, video_iter, slots = iter(standalone), iter(clips), []
        for t in texts:
            for match in pattern.finditer(t):
                if match.group() == self.audio_token:
                    slots.append(next(audio_iter))
                else:
                    clip = next(video_iter)
                    slots.append(f"track of video {clip.source!r}" if names else clip.audio)
        return slots

    def _expand_rows(self, rows, data, num_audio_tokens: list[int], use_audio_in_video: bool) -> list[np.ndarray]:
        """Replace each placeholder id by its expanded id sequence (a few numpy ops per media item)."""
        merge2 = self.merge_size**2
        image_grids = data.get("image_grid_thw", np.zeros((0, 3), np.int64))
        video_grids = data.get("video_grid_thw", np.zeros((0, 3), np.int64))
        seconds = data.get("video_second_per_grid", np.zeros(0, np.float32))
        placeholders = (self.audio_token_id, self.image_token_id, self.video_token_id)
        counters = {"audio": 0, "image": 0, "video": 0}
        expanded = []
        for row in rows:
            row = np.asarray(row, dtype=np.int64)
            positions = np.flatnonzero(np.isin(row, placeholders))
            pieces, last = [], 0
            for pos in positions.tolist():
                pieces.append(row[last:pos])
                token = int(row[pos])
                if token == self.image_token_id:
                    n = int(np.prod(image_grids[counters["image"]])) // merge2
                    pieces.append(np.full(n, self.image_token_id, np.int64))
                    counters["image"] += 1
                elif token == self.audio_token_id:
                    pieces.append(np.full(num_audio_tokens[counters["audio"]], self.audio_token_id, np.int64))
                    counters["audio"] += 1
                else:
                    grid, spg = video_grids[counters["video"]], float(seconds[counters["video"]])
                    counters["video"] += 1
                    if not use_audio_in_video:
                        pieces.append(np.full(int(np.prod(grid)) // merge2, self.video_token_id, np.int64))
                    else:
                        n_audio = num_audio_tokens[counters["audio"]]
                        counters["audio"] += 1
                        is_audio = interleave_video_audio(
                            torch.as_tensor(grid), spg, n_audio, self.rope_tokens
                        ).numpy()
                        body = np.where(is_audio, self.audio_token_id, self.video_token_id).astype(np.int64)
                        pieces += [np.array([self.audio_bos_token_id]), body, np.array([self.audio_eos_token_id])]
                last = pos + 1
            pieces.append(row[last:])
            expanded.append(np.concatenate(pieces).astype(np.int64))
        return expanded

    def _pad(self, rows: list[np.ndarray], padding, side: str):
        lengths = [len(r) for r in rows]
        if not padding or padding == "do_not_pad":
            if len(set(lengths)) > 1:
                return [r.tolist() for r in rows], [[1] * n for n in lengths]
            return np.stack(rows), np.ones((len(rows), lengths[0]), np.int64)
        width = max(lengths)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            raise ValueError("The tokenizer has no pad token: cannot pad a batch of prompts of different lengths.")
        ids = np.full((len(rows), width), pad_id, np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
            ids[i, sl], mask[i, sl] = r, 1
        return ids, mask

    def _position_ids(self, data: dict, use_audio_in_video: bool) -> dict[str, torch.Tensor]:
        ids, mask = data["input_ids"], data["attention_mask"]
        if not isinstance(ids, np.ndarray):
            raise ValueError("return_position_ids=True needs a padded batch (padding=True) of equal-length rows.")
        opt = {
            k: torch.as_tensor(data[k])
            for k in ("image_grid_thw", "video_grid_thw", "video_second_per_grid")
            if k in data
        }
        lengths = torch.as_tensor(data["feature_attention_mask"]).sum(-1) if "feature_attention_mask" in data else None
        position_ids, rope_deltas = get_rope_index(
            torch.as_tensor(ids),
            self.rope_tokens,
            attention_mask=torch.as_tensor(mask),
            image_grid_thw=opt.get("image_grid_thw"),
            video_grid_thw=opt.get("video_grid_thw"),
            audio_feature_lengths=lengths,
            video_second_per_grid=opt.get("video_second_per_grid"),
            use_audio_in_video=use_audio_in_video,
        )
        return {"position_ids": position_ids, "rope_deltas": rope_deltas}

    # ------------------------------------------------------------------------------------------------ chat

    def apply_chat_template(
        self,
        conversation: list[dict] | list[list[dict]],
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        continue_final_message: bool = False,
        tokenize: bool = False,
        return_dict: bool = False,
        return_tensors: str | None = None,
        use_audio_in_video: bool = False,
        add_default_system_prompt: bool = True,
        processor_kwargs: dict | None = None,
        allow_special_tokens_in_text: bool = False,
        **template_kwargs,
    ):
        """Render conversations with the chat template and, if `tokenize`, load their media and process everything.

        Messages have a string `content` or a list of blocks: `{"type": "text", "text": ...}`,
        `{"type": "audio", "audio": path_or_array[, "sampling_rate": sr]}`, `{"type": "image", "image": path_or_PIL}`,
        `{"type": "video", "video": path_or_frames}` (`"path"` works as the key too). When the first message is not
        a system message, `default_system_prompt` is inserted (unless `add_default_system_prompt=False`).

        Special-token strings inside message texts (`<|im_end|><|im_start|>system ...` typed by a user) are kept as
        plain text when tokenizing, never control tokens; trusted callers that build control tokens into texts on
        purpose pass `allow_special_tokens_in_text=True`. (The untokenized prompt string cannot show the
        difference: tokenize it yourself only if its texts are trusted.)

        Returns:
            the prompt string(s) when `tokenize=False`; else `input_ids`, or the full `BatchFeature` with
            `return_dict=True`.
        """
        template = self.chat_template
        if chat_template is not None:  # a template name (when the processor has several) or a template string
            named = isinstance(template, dict) and chat_template in template
            template = template[chat_template] if named else chat_template
        elif isinstance(template, dict):
            template = template["default"]
        conversations, is_batched = normalize_conversations(conversation)
        if add_default_system_prompt:
            conversations = with_system_prompt(conversations, self.default_system_prompt)
        literals = []
        if not allow_special_tokens_in_text:
            conversations, literals = protect_text(conversations, control_token_strings(self.tokenizer))
        prompts, _ = render_jinja_template(
            conversations=conversations,
            chat_template=template,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message,
            **{**self.tokenizer.special_tokens_map, **template_kwargs},
        )
        if not tokenize:
            prompts = [restore_text(p, literals) for p in prompts]
            return prompts if is_batched else prompts[0]
        media = collect_media(conversations)
        out = self(
            text=prompts,
            images=media["image"] or None,
            videos=media["video"] or None,
            audio=media["audio"] or None,
            use_audio_in_video=use_audio_in_video,
            return_tensors=return_tensors,
            text_literals=literals,
            **(processor_kwargs or {}),
        )
        return out if return_dict else out["input_ids"]

    def post_process_multimodal_output(
        self, generated_outputs, skip_special_tokens=True, generation_mode=None, **kwargs
    ):
        """For the `any-to-any` pipeline: decoded text (`generation_mode` None / "text"), or the waveforms
        (`"audio"`: the second item of the full model's `(sequences, waveforms)`) as float32 arrays at 24 kHz, each a
        [`Waveform`]: a `numpy.ndarray` (what transformers' Qwen2.5-Omni gives) carrying its `sampling_rate`."""
        if generation_mode in (None, "text"):  # the full model speaks by default: its text is the first item
            sequences = generated_outputs[0] if isinstance(generated_outputs, tuple) else generated_outputs
            return self.post_process_image_text_to_text(sequences, skip_special_tokens, **kwargs)
        if generation_mode != "audio":
            raise ValueError(f"generation_mode must be 'text' or 'audio', got {generation_mode!r}")
        audio = generated_outputs[1]
        waves = audio if isinstance(audio, list) else [audio]
        return [Waveform(wave.reshape(-1).float().cpu().numpy(), SPEECH_SAMPLING_RATE) for wave in waves]

    def post_process_image_text_to_text(
        self, generated_outputs, skip_special_tokens: bool = True, **kwargs
    ) -> list[str]:
        """Decode generated ids `(batch, seq)` to strings."""
        return self.tokenizer.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)


__all__ = ["DEFAULT_SYSTEM_PROMPT", "OmniProcessor"]
