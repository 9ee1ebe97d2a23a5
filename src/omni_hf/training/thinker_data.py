"""Thinker training data: load rows with `datasets`, validate them, decode their media, encode them, with counts.

Row formats (one per row; a dataset may mix them):

- `{"messages": [...]}`: a ChatML conversation; content is a string or a list of blocks
  `{"type": "text", "text": ...}`, `{"type": "audio" | "image" | "video", "audio" | "image" | "video": media}`.
  Labels cover the assistant turns only.
- pairs, `{"audio" | "image" | "video": media, "text": "...", "prompt": "..." (optional)}`: the user gives the media
  (and the prompt), the assistant answers `text` (a transcript, a caption, ...).
- `{"text": "..."}` alone: a plain document (pre-training stages), labelled on every token.

Media values: a path (relative paths are resolved against the data file's folder), a `datasets` media dict
(`{"path": ..., "bytes": ...}` or `{"array": ..., "sampling_rate": ...}`), a PIL image or an array.

Bad rows are dropped and counted, never silently: `missing_media` (a media block/column without a value or a file that
does not exist), `undecodable_media` (a file that cannot be decoded), `malformed` (no usable fields),
`too_long` (longer than `max_length` after media expansion). With `too_long="truncate"`, rows are cut at
`max_length` when every media token lies before the cut (counted as `truncated`), else dropped.
"""

import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from transformers.utils import logging

from .collator import encode_conversation, encode_text, truncate_example
from .recipe_inputs import RecipeInputError, check_data_file

logger = logging.get_logger(__name__)

MEDIA_KINDS = ("audio", "image", "video")
DATA_FILE_TYPES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}


class BadRow(ValueError):
    """A row that cannot be used; `reason` is its count key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def load_rows(data: str, split: str = "train", max_samples: int | None = None):
    """A `datasets.Dataset` from a local file (.json/.jsonl/.csv/.parquet), a `save_to_disk` folder or a Hub name.

    Media columns typed `Audio`/`Image`/`Video` are read undecoded (`decode=False`): media are decoded per row here,
    so one bad file drops one row instead of stopping the run. Returns `(dataset, base_dir)`.
    """
    import datasets

    path = Path(data)
    if path.suffix in DATA_FILE_TYPES:
        if not path.is_file():
            raise FileNotFoundError(f"Data file {data!r} does not exist.")
        check_data_file(path)  # empty file / malformed JSON line: named here, not deep inside `datasets`
        dataset = datasets.load_dataset(DATA_FILE_TYPES[path.suffix], data_files=str(path), split="train")
        base = path.parent
    elif path.is_dir() and (path / "dataset_info.json").is_file():
        dataset, base = datasets.load_from_disk(str(path)), path
    else:
        dataset, base = datasets.load_dataset(data, split=split), Path(".")
    if isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"{data!r} has several splits {list(dataset)}: pass the split to use.")
    for name, feature in dataset.features.items():
        if type(feature).__name__ in ("Audio", "Image", "Video"):
            dataset = dataset.cast_column(name, type(feature)(decode=False))
    if len(dataset) == 0:
        raise RecipeInputError(f"Data {data!r} has no rows.")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset, base


def row_to_messages(row: dict, base_dir: Path, index: int, video_audio: bool = False) -> list[dict] | str:
    """A row → a conversation whose media are decoded (or a plain text document). Raises `BadRow`.

    `video_audio`: also decode each video's audio track (training with `use_audio_in_video`); without it a silent
    video is a usable row."""
    if row.get("messages"):
        messages = []
        for message in row["messages"]:
            content = message.get("content")
            if isinstance(content, list):  # Arrow fills absent struct fields with None: drop them
                content = [{k: v for k, v in b.items() if v is not None or k == b.get("type")} for b in content]
                content = [_resolve_block(block, base_dir, index, video_audio) for block in content]
            messages.append({"role": message["role"], "content": content})
        return messages
    kinds = [k for k in MEDIA_KINDS if row.get(k) is not None]
    text = row.get("text")
    if not kinds:
        if row.get("prompt"):
            raise BadRow("missing_media", f"Row {index} has a prompt but no audio, image or video value.")
        if isinstance(text, str) and text.strip():
            return text
        raise BadRow("malformed", f"Row {index} has no 'messages', media column or 'text': got keys {sorted(row)}.")
    if not isinstance(text, str) or not text.strip():
        raise BadRow("malformed", f"Row {index} has media but no 'text' (the answer to learn).")
    blocks = [_resolve_block({"type": k, k: row[k]}, base_dir, index, video_audio) for k in kinds]
    if row.get("prompt"):
        blocks.append({"type": "text", "text": row["prompt"]})
    return [{"role": "user", "content": blocks}, {"role": "assistant", "content": text}]


def _resolve_block(block: dict, base_dir: Path, index: int, video_audio: bool = False) -> dict:
    kind = block.get("type")
    if kind not in MEDIA_KINDS:
        return block
    value = block.get(kind, block.get("path"))
    if isinstance(value, dict) and "array" not in value:  # datasets' undecoded {"path", "bytes"}
        value = value.get("bytes") or value.get("path")
    if value is None or (isinstance(value, str) and not value):
        raise BadRow("missing_media", f"Row {index}: its {kind} is missing (no value).")
    decoded = {"type": kind}
    try:
        decoded[kind] = _decode(kind, value, base_dir, video_audio)
    except FileNotFoundError as error:
        raise BadRow("missing_media", f"Row {index}: {kind} file not found ({error}).") from error
    except Exception as error:  # any decoder failure: the row is dropped and counted
        raise BadRow("undecodable_media", f"Row {index}: cannot decode its {kind} ({error}).") from error
    return decoded


def _decode(kind: str, value, base_dir: Path, video_audio: bool = False):
    from ..processing.audio import MAX_AUDIO_SECONDS, load_audio
    from ..processing.media import as_video_clip, load_image

    if isinstance(value, (str, os.PathLike)):
        path = Path(value) if Path(value).is_absolute() else base_dir / value
        if not path.exists():  # a device, FIFO or folder exists: the media loader says what it is
            raise FileNotFoundError(str(path))
        value = str(path)
    if kind == "audio":  # paths, bytes (wav, mp3, m4a, ...) and arrays: (samples,) float32 at 16 kHz
        return load_audio(value, max_seconds=MAX_AUDIO_SECONDS)
    if kind == "image":
        return load_image(value)  # paths, bytes (size checked from the header), PIL images, arrays
    if isinstance(value, bytes):
        with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
            handle.write(value)
            handle.flush()
            return as_video_clip(handle.name, with_audio=video_audio)
    if isinstance(value, str):
        return as_video_clip(value, with_audio=video_audio)
    return value


def encode_rows(
    processor,
    dataset,
    base_dir: Path,
    max_length: int,
    too_long: str = "drop",
    use_audio_in_video: bool = False,
) -> tuple[list[dict], Counter]:
    """Validate, decode and encode every row; returns the encoded examples and the counts per outcome.

    Raises:
        ValueError: `too_long` is not "drop"/"truncate", or no row is usable (the counts say why).
    """
    if too_long not in ("drop", "truncate"):
        raise ValueError(f"too_long must be 'drop' or 'truncate', got {too_long!r}.")
    media_ids = [processor.audio_token_id, processor.image_token_id, processor.video_token_id]
    examples, counts = [], Counter()
    for index, row in enumerate(tqdm(dataset, desc="Encoding rows", disable=len(dataset) < 100)):
        try:
            source = row_to_messages(row, base_dir, index, video_audio=use_audio_in_video)
            if isinstance(source, str):
                example = encode_text(processor, source)
            else:
                audio_in_video = use_audio_in_video and _has(source, "video")
                example = encode_conversation(processor, source, use_audio_in_video=audio_in_video)
        except BadRow as error:
            counts[error.reason] += 1
            logger.warning(f"Dropping row: {error}")
            continue
        except ValueError as error:  # e.g. placeholder/media mismatch, video without sound for audio-in-video
            counts["malformed"] += 1
            logger.warning(f"Dropping row {index}: {error}")
            continue
        cut_from = len(example["input_ids"])
        if cut_from > max_length:
            cut = truncate_example(example, max_length, media_ids) if too_long == "truncate" else None
            if cut is None:
                counts["too_long"] += 1
                logger.warning(f"Dropping row {index}: {cut_from} tokens > max_length={max_length}")
                continue
            example = cut
        if not (example["labels"] != -100).any():
            counts["no_labels"] += 1
            logger.warning(f"Dropping row {index}: no assistant token left to learn from (after truncation?).")
            continue
        examples.append(example)
        counts["kept"] += 1
        counts["truncated"] += int(cut_from > max_length)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    logger.warning(f"Data: {len(dataset)} rows → {summary}")
    if not examples:
        raise ValueError(f"No usable training rows out of {len(dataset)} ({summary}).")
    return examples, counts


def _has(messages: list[dict], kind: str) -> bool:
    return any(
        isinstance(m.get("content"), list) and any(b.get("type") == kind for b in m["content"]) for m in messages
    )


def lengths_summary(examples: list[dict]) -> dict[str, float]:
    lengths = np.array([len(e["input_ids"]) for e in examples])
    return {"samples": len(lengths), "mean_tokens": float(lengths.mean()), "max_tokens": int(lengths.max())}


__all__ = ["BadRow", "encode_rows", "lengths_summary", "load_rows", "row_to_messages"]
