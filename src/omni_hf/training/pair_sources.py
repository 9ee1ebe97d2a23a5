"""Talker preference pairs from any source, in one format that `TalkerDPOTrainer` trains on.

The pair format (one row per pair; a `datasets.Dataset`):

| column | what |
|---|---|
| `prompt` | the conversation as ChatML JSON: text, and media (audio/image/video) as file paths or URLs |
| `text` | the reply that is spoken |
| `thinker_prompt_ids`, `thinker_reply_ids` | the Thinker's token ids of the prompt (media expanded) and of the reply |
| `use_audio_in_video` | whether a video's sound is interleaved with it |
| `speaker`, `speaker_bos_id` | the voice the speech is in (its Talker bos id) |
| `chosen_codes`, `rejected_codes` | speech codes (50 per second) of the preferred / other speech |
| `chosen_audio`, `rejected_audio` | the same speech, playable: `Audio(decode=False)` `{"bytes": WAV, "path"}` |
| `chosen_score`, `rejected_score` | one number per side (lower is better for ranked samples; as given by judges) |
| `chosen_scores`, `rejected_scores` | every measured metric of the side, as JSON (`{"wer": 0.1, ...}`) |
| `source` | `talker_samples`, `manifest` or `hub:<dataset id>` |

Built samples (`build_preference_pairs`) add the per-metric columns (`chosen_wer`, ...). Sources:

* (a) the Talker's own samples ranked automatically: `build_preference_pairs` (saved as `<dir>/dataset`);
* (b) a JSONL manifest of recordings judged by people, one pair per line:
  `{"text": "...", "chosen_audio": "a.wav", "rejected_audio": "b.wav"}` or with `"conversation": [...]` and
  `"reply": "..."` instead of `"text"`; optional `"chosen_score"`, `"rejected_score"`, `"speaker"`. Paths are
  relative to the manifest's folder; both recordings are encoded to codes with the speech tokenizer
  (`omni_hf.voices.speech_tokenizer.OmniSpeechTokenizer`);
* (c) a Hub dataset id (`namespace/name`, `split`): rows already in the pair format are used as they are; rows with
  only `chosen_audio` / `rejected_audio` (and `text` or `conversation` + `reply`) are encoded as a manifest.

`load_pairs(source, ...)` takes any of: a pair build folder or `save_to_disk` folder, a `.jsonl` manifest, a Hub id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datasets import Dataset, load_dataset
from transformers.utils import logging

from .pair_audio import AUDIO_COLUMNS, cast_audio_columns, file_entry, read_audio, wav_entry
from .preference_pairs import DATASET, TRAINING_COLUMNS, check_pair_dataset, prepare_prompt, save_dataset_atomic
from .recipe_inputs import read_jsonl, synthetic_count

logger = logging.get_logger(__name__)

JUDGED_KEYS = ("chosen_audio", "rejected_audio")


def load_speech_tokenizer(path_or_model, device=None):
    """An `OmniSpeechTokenizer` (instance or `from_pretrained` path), in eval mode."""
    from ..voices.speech_tokenizer import OmniSpeechTokenizer

    if isinstance(path_or_model, OmniSpeechTokenizer):
        return path_or_model.eval()
    if not isinstance(path_or_model, (str, os.PathLike)) or not (Path(path_or_model) / "config.json").is_file():
        raise ValueError(
            f"speech tokenizer {path_or_model!r} is not a saved OmniSpeechTokenizer folder (train one with "
            "recipes/speech_tokenizer.py)"
        )
    tokenizer = OmniSpeechTokenizer.from_pretrained(str(path_or_model))
    return tokenizer.to(device).eval() if device is not None else tokenizer.eval()


def check_judged_row(row: dict, index: int, where: str) -> None:
    """A judged pair row needs both recordings and a text (or a conversation with its reply)."""
    if not isinstance(row, dict):
        raise ValueError(f"{where} row {index}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in JUDGED_KEYS if not row.get(key)]
    if missing:
        raise ValueError(f"{where} row {index}: missing {missing} (paths of the two recordings)")
    if row.get("conversation"):
        if not isinstance(row.get("reply"), str) or not row["reply"].strip():
            raise ValueError(f"{where} row {index}: a 'conversation' needs the spoken 'reply' text")
    elif not isinstance(row.get("text"), str) or not row["text"].strip():
        raise ValueError(f"{where} row {index}: needs 'text' (what is said) or 'conversation' + 'reply'")
    for key in ("chosen_score", "rejected_score"):
        if row.get(key) is not None and not isinstance(row[key], (int, float)):
            raise ValueError(f"{where} row {index}: {key} must be a number, got {row[key]!r}")


def judged_pairs(
    model,
    processor,
    rows: list[dict],
    speech_tokenizer,
    speaker: str = "Chelsie",
    base_dir: str | os.PathLike | None = None,
    source: str = "manifest",
    where: str = "manifest",
) -> Dataset:
    """Rows of judged recordings (see the module docstring) → pairs: both recordings encoded to codes, kept as
    WAV. Every row is checked (and every file read) before the first one is encoded."""
    if not rows:
        raise ValueError(f"{where} has no rows")
    if speech_tokenizer is None:
        raise ValueError(f"{where}: judged recordings need a speech tokenizer to become codes (--speech_tokenizer)")
    known = set(model.speakers)
    audio = []
    for i, row in enumerate(rows):
        check_judged_row(row, i, where)
        if row.get("speaker", speaker) not in known:
            raise ValueError(f"{where} row {i}: speaker {row.get('speaker')!r} is not one of {sorted(known)}")
        audio.append([read_audio(row[key], base_dir, f"{where} row {i} {key}") for key in JUDGED_KEYS])
    tokenizer = load_speech_tokenizer(speech_tokenizer)
    limit = model.talker.config.num_speech_codes
    pairs = []
    for i, (row, recordings) in enumerate(zip(rows, audio)):
        item = {"conversation": row["conversation"], "reply": row["reply"]} if row.get("conversation") else row["text"]
        if isinstance(item, dict) and row.get("use_audio_in_video"):
            item["use_audio_in_video"] = True
        prompt = prepare_prompt(model, processor, item, i)
        prompt.pop("media")
        pair = {**prompt, "source": source, "prompt_index": i, "speaker": row.get("speaker", speaker)}
        pair["speaker_bos_id"] = model.speakers[pair["speaker"]].bos_token_id
        for side, key, (waveform, rate) in zip(("chosen", "rejected"), JUDGED_KEYS, recordings):
            codes = tokenizer.encode(waveform, rate).reshape(-1).tolist()
            if not codes or max(codes) >= limit:
                raise ValueError(f"{where} row {i}: {key} encodes to codes outside the Talker's [0, {limit})")
            pair[f"{side}_codes"] = codes
            value = row[key]
            if isinstance(value, dict) and value.get("bytes"):
                pair[key] = {"bytes": value["bytes"], "path": value.get("path") or f"{i:07d}-{side}.wav"}
            elif isinstance(value, (str, os.PathLike)):
                path = Path(base_dir, value) if base_dir is not None and not Path(value).is_absolute() else value
                pair[key] = file_entry(path)
            else:
                pair[key] = wav_entry(waveform, rate, f"{i:07d}-{side}.wav")
            score = row.get(f"{side}_score")
            pair[f"{side}_score"] = None if score is None else float(score)
            pair[f"{side}_scores"] = json.dumps({} if score is None else {"judged": float(score)})
        pairs.append(pair)
    logger.info(f"{len(pairs)} judged pairs from {where}, encoded with the speech tokenizer")
    return cast_audio_columns(Dataset.from_list(pairs))


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSONL manifest (blank lines skipped); a line that is not JSON is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair manifest {str(path)!r} does not exist")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not JSON: {error}") from None
    return rows


def read_prompts(source: str) -> list:
    """Prompts for the recipes: a .txt (one text per line), a .jsonl (texts or `{"conversation", "reply"}`), or
    `synthetic:N` (N short punctuated sentences for tiny runs)."""
    if source.startswith("synthetic:"):
        words = ["hello", "world", "the", "quick", "fox", "sat", "on", "a", "mat", "today"]
        return [
            f"{words[i % 10]} {words[(i * 3 + 1) % 10]}, {words[(i * 7 + 2) % 10]} {i}."
            for i in range(synthetic_count(source, "--prompts"))
        ]
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"prompts {source!r}: no such file (a .txt, a .jsonl or synthetic:N)")
    if path.suffix == ".jsonl":
        return read_jsonl(path)  # a malformed line is named by file and line
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"--prompts {source}: the file has no prompts (it is empty)")
    return lines


def is_hub_id(source: str) -> bool:
    parts = str(source).split("/")
    return len(parts) == 2 and all(parts) and not Path(source).exists()


def load_pairs(
    source: str | os.PathLike,
    model=None,
    processor=None,
    speech_tokenizer=None,
    speaker: str = "Chelsie",
    split: str = "train",
    save_to: str | os.PathLike | None = None,
) -> Dataset:
    """Pairs from any source (module docstring): a pair build / `save_to_disk` folder, a `.jsonl` manifest of judged
    recordings, or a Hub dataset id. Judged recordings need `model`, `processor` and `speech_tokenizer`; the pairs
    made from them are saved (staged, renamed into place) to `save_to` when given. Returns checked pairs."""
    from .preference_pairs import load_preference_pairs

    path = Path(source)
    if path.is_dir():
        return cast_audio_columns(load_preference_pairs(path))
    if path.suffix == ".jsonl":
        if model is None or processor is None:
            raise ValueError("a judged-recordings manifest needs the model and processor (prompt ids, speakers)")
        dataset = judged_pairs(
            model, processor, read_manifest(path), speech_tokenizer, speaker, path.parent, "manifest", str(path)
        )
    elif is_hub_id(str(source)):
        dataset = load_hub_pairs(str(source), split, model, processor, speech_tokenizer, speaker)
    else:
        raise ValueError(
            f"pairs {str(source)!r}: expected a pair dataset folder, a .jsonl manifest of judged recordings or a "
            "Hub dataset id 'namespace/name' (no such file or folder here)"
        )
    if save_to is not None:
        save_dataset_atomic(dataset, Path(save_to) / DATASET)
    return check_pair_dataset(dataset, str(source))


def load_hub_pairs(repo_id: str, split: str, model=None, processor=None, speech_tokenizer=None, speaker="Chelsie"):
    """A Hub dataset of pairs: used as it is when in the pair format, else its judged recordings are encoded."""
    try:
        dataset = load_dataset(repo_id, split=split)
    except Exception as error:  # not found, no network, no such split ...
        raise ValueError(f"Hub dataset {repo_id!r} (split {split!r}) cannot be loaded: {error}") from error
    dataset = cast_audio_columns(dataset)
    if all(column in dataset.column_names for column in TRAINING_COLUMNS):
        return dataset
    if all(column in dataset.column_names for column in AUDIO_COLUMNS):
        if model is None or processor is None:
            raise ValueError(f"Hub dataset {repo_id!r} holds recordings only: give the model and processor")
        rows = dataset.to_list()
        return judged_pairs(model, processor, rows, speech_tokenizer, speaker, None, f"hub:{repo_id}", repo_id)
    raise ValueError(
        f"Hub dataset {repo_id!r} is neither in the pair format (needs {list(TRAINING_COLUMNS)}) nor judged "
        f"recordings (needs {list(AUDIO_COLUMNS)} and text); it has {dataset.column_names}"
    )


def pair_waveforms(dataset: Dataset, side: str, limit: int | None = None) -> tuple[list, int | None]:
    """The `side` ("chosen" / "rejected") speech of the pairs as waveforms (all at one rate: resampled to the
    first's) for reports; `([], None)` when the dataset carries no audio."""
    from ..token2wav.mel import resample

    column = f"{side}_audio"
    if column not in dataset.column_names:
        return [], None
    waves, rate = [], None
    for value in dataset.select(range(min(limit or len(dataset), len(dataset))))[column]:
        audio, sr = read_audio(value, what=column)
        rate = rate or sr
        waves.append(resample(audio, sr, rate))
    return waves, rate


__all__ = [
    "JUDGED_KEYS",
    "check_judged_row",
    "is_hub_id",
    "judged_pairs",
    "load_hub_pairs",
    "load_pairs",
    "load_speech_tokenizer",
    "pair_waveforms",
    "read_prompts",
    "read_manifest",
]
