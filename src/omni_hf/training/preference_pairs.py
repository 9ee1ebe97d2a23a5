"""Preference pairs of the Talker's own speech (paper Section 4.3): sample K candidates per prompt, score, keep the
best and the worst.

For each prompt the Thinker runs once, teacher-forced over prompt + reply; the Talker then samples K code sequences
in one batched `generate` (official sampling: top-k 40, top-p 0.8, temperature 0.9, repetition penalty 1.05), each
is vocoded by token2wav and scored (`SpeechScorer`: ASR → WER, energy pauses → punctuation-pause error, optionally
speaker similarity), ranked by a `RankingRule`. Work is saved in shards (and the chosen/rejected speech as WAV files)
as it goes, so an interrupted build resumes where it stopped; the result is a `datasets.Dataset` in the pair format
of `omni_hf.training.pair_sources` (codes, playable audio, scores).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from datasets import Dataset, load_from_disk
from tqdm.auto import tqdm
from transformers.utils import logging

from ..common.staged_save import check_complete, staged_save
from ..processing.audio import TOKEN2WAV_SAMPLING_RATE as SAMPLING_RATE
from ..talker.talker_inputs import build_talker_inputs
from .pair_audio import cast_audio_columns, wav_entry
from .rewards import RankingRule, SpeechScorer, rank_candidates
from .talker_data import repeat_layout, thinker_track
from .voice_lora import DEFAULT_PROMPT

logger = logging.get_logger(__name__)

TRAINING_COLUMNS = ("thinker_prompt_ids", "thinker_reply_ids", "speaker_bos_id", "chosen_codes", "rejected_codes")
STATE_FILE, SHARDS, DATASET, AUDIO = "state.json", "shards", "dataset", "audio"


def has_media(conversation) -> bool:
    """Whether a ChatML conversation has audio, image or video content."""
    return any(
        isinstance(message.get("content"), list)
        and any(isinstance(part, dict) and part.get("type", "text") != "text" for part in message["content"])
        for message in conversation
    )


def encode_media_prompt(processor, conversation, use_audio_in_video: bool = False) -> tuple[list[int], dict]:
    """A conversation with media → its Thinker prompt ids (placeholders expanded) and media tensors for
    `talker_training_example(media=...)`. The same call rebuilds them from the stored conversation at training."""
    encoded = processor.apply_chat_template(
        conversation,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        use_audio_in_video=use_audio_in_video,
    )
    media = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
    return encoded["input_ids"][0].tolist(), {**media, "use_audio_in_video": use_audio_in_video}


def prepare_prompt(model, processor, item, index: int = 0, template: str = DEFAULT_PROMPT, max_reply_tokens=256):
    """One prompt → `{"prompt", "text", "thinker_prompt_ids", "thinker_reply_ids", "use_audio_in_video", "media"}`.

    `item`: a text to speak (str or `{"text": ...}`, wrapped as "Read this aloud: ..."), or `{"conversation":
    [ChatML messages], "reply": text}` (the reply is spoken); without "reply", the Thinker answers greedily first.
    A conversation may hold audio, images and videos given as file paths (they are stored with the pair and read
    again for training); `"use_audio_in_video": true` interleaves a video with its sound. `media` is None or the
    processor's media tensors (not stored).
    """
    tokenizer = processor.tokenizer
    media, use_audio_in_video = None, False
    if isinstance(item, str) or (isinstance(item, dict) and "conversation" not in item):
        text = item if isinstance(item, str) else item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"prompt {index}: the text to speak is empty or whitespace ({text!r})")
        conversation = [{"role": "user", "content": [{"type": "text", "text": template.format(text=text.strip())}]}]
        reply = text.strip()
    elif isinstance(item, dict):
        conversation, reply = item["conversation"], item.get("reply")
        use_audio_in_video = bool(item.get("use_audio_in_video", False))
        if not isinstance(conversation, list) or not all(isinstance(m, dict) for m in conversation):
            raise ValueError(f"prompt {index}: 'conversation' must be a list of ChatML messages, got {conversation!r}")
    else:
        raise ValueError(f"prompt {index}: expected a text or a dict with 'text' or 'conversation', got {item!r}")
    try:
        prompt_json = json.dumps(conversation, ensure_ascii=False)
    except TypeError:
        raise ValueError(
            f"prompt {index}: media in a conversation must be file paths or URLs (the pair dataset stores the "
            "conversation and training reads the media again), not in-memory arrays or images"
        ) from None
    if has_media(conversation):
        prompt_ids, media = encode_media_prompt(processor, conversation, use_audio_in_video)
    else:
        prompt_text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    if reply is None:
        thinker_media = {k: v for k, v in (media or {}).items() if k != "use_audio_in_video"}
        with torch.no_grad():
            out = model.thinker.generate(
                input_ids=torch.tensor([prompt_ids], device=model.thinker.device),
                **{k: v.to(model.thinker.device) for k, v in thinker_media.items()},
                use_audio_in_video=use_audio_in_video,
                max_new_tokens=max_reply_tokens,
                do_sample=False,
            )
        reply = tokenizer.decode(out[0, len(prompt_ids) :], skip_special_tokens=True)
    if not isinstance(reply, str) or not reply.strip():
        raise ValueError(f"prompt {index}: the reply text is empty or whitespace ({reply!r})")
    reply_ids = tokenizer(reply.strip(), add_special_tokens=False)["input_ids"]
    if len(reply_ids) < 2:
        raise ValueError(f"prompt {index}: the reply {reply!r} must have at least 2 tokens to be spoken")
    return {
        "prompt": prompt_json,
        "text": reply.strip(),
        "thinker_prompt_ids": prompt_ids,
        "thinker_reply_ids": reply_ids,
        "use_audio_in_video": use_audio_in_video,
        "media": media,
    }


@torch.no_grad()
def sample_candidates(
    model,
    prompt_ids,
    reply_ids,
    num_candidates: int,
    speaker: str = "Chelsie",
    voice_adapter: str | None = None,
    max_new_tokens: int = 600,
    media: dict | None = None,
    **sampling,
) -> list[torch.Tensor]:
    """K code sequences `(m_k,)` for one reply: the Thinker runs once, the Talker samples K rows in one batch.

    `media`: the prompt's media tensors (`prepare_prompt`); `sampling`: Talker `generate` kwargs (default: its
    official sampling config; `do_sample=False` for greedy).
    """
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    full, embeds, hidden, layout = thinker_track(model, prompt_ids, reply_ids, media)
    p = len(prompt_ids)
    track = [(embeds[:, :p], hidden[:, :p]), (embeds[:, p:], hidden[:, p:])]
    bos = model.speakers[speaker].bos_token_id
    inputs = build_talker_inputs(model.thinker, model.talker.config, full[:, :p], full, track, bos)
    inputs = {k: v.repeat(num_candidates, *([1] * (v.dim() - 1))) for k, v in inputs.items()}
    codes = model.talker_codes(
        inputs, repeat_layout(layout, num_candidates), voice_adapter, max_new_tokens=max_new_tokens, **sampling
    )
    return [row.cpu() for row in codes]


def _fingerprint(prompts, settings: dict) -> str:
    blob = json.dumps({"prompts": prompts, **settings}, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_records(directory: Path) -> list[dict]:
    records = []
    for shard in sorted((directory / SHARDS).glob("*.jsonl")):
        records += [json.loads(line) for line in shard.read_text().splitlines() if line.strip()]
    return sorted(records, key=lambda r: r["index"])


def build_preference_pairs(
    model,
    processor,
    prompts: list,
    output_dir: str | os.PathLike,
    scorer=None,
    transcriber=None,
    num_candidates: int = 4,
    speaker: str = "Chelsie",
    voice_adapter: str | None = None,
    seed: int = 0,
    talker_max_new_tokens: int = 600,
    talker_sampling: dict | None = None,
    token2wav_kwargs: dict | None = None,
    pause_config=None,
    save_every: int = 8,
    resume: bool = True,
    template: str = DEFAULT_PROMPT,
    rule: RankingRule | str | None = None,
    keep_audio: bool = True,
) -> Dataset:
    """Build (chosen, rejected) Talker speech pairs for `prompts` and save them as a `datasets.Dataset`.

    Args:
        prompts: texts to speak and/or `{"conversation": ..., "reply": ...}` dicts, media allowed as file paths
            (see `prepare_prompt`).
        output_dir: work directory: `shards/*.jsonl` (saved every `save_every` prompts), `state.json`, and the
            final `dataset/` (`Dataset.save_to_disk`, written to a temporary folder and renamed).
        scorer: `(text, codes, waveform, sampling_rate) -> CandidateScore`; default `SpeechScorer(transcriber)`.
            A scorer with `needs_audio = False` gets `waveform=None` (no vocoding).
        num_candidates: K >= 2 samples per prompt; the best and the worst by `rule` form the pair, prompts whose
            candidates all tie give none (candidates with no codes are scored but never paired).
        rule: a `RankingRule` or its text (`"wer,pause_error"` by default; e.g. `"wer,-speaker_similarity"` or
            `"wer=1,pause_error=0.1,speaker_similarity=-2"`).
        keep_audio: store the chosen and rejected speech as playable WAV (`chosen_audio` / `rejected_audio`).
        seed: candidates of prompt i are sampled with seed `seed + i` (a resumed build samples the same ones).
        resume: continue a build in `output_dir` (same prompts and settings); False needs an empty `output_dir`.

    Returns:
        the pairs: `prompt` (the conversation as JSON), `text`, `thinker_prompt_ids`, `thinker_reply_ids`,
        `use_audio_in_video`, `speaker`, `speaker_bos_id`,
        `chosen_codes`, `rejected_codes`, `chosen_wer`, `rejected_wer`, `chosen_pause_error`,
        `rejected_pause_error`, `chosen_transcript`, `rejected_transcript`, `candidate_wers`,
        `candidate_pause_errors`, `prompt_index`, `source` ("talker_samples"), `chosen_score` / `rejected_score`
        (the rule's score, lower is better), `chosen_scores` / `rejected_scores` (every metric, JSON),
        `chosen_speaker_similarity` / `rejected_speaker_similarity` (when measured), and with `keep_audio`
        `chosen_audio` / `rejected_audio` (`Audio(decode=False)`: WAV bytes at 24 kHz).
    """
    if not isinstance(num_candidates, int) or num_candidates < 2:
        raise ValueError(f"num_candidates must be an integer K >= 2 (best vs worst), got {num_candidates!r}")
    if not prompts:
        raise ValueError("prompts is empty: give at least one text or conversation")
    if scorer is None:
        if transcriber is None:
            raise ValueError("give a scorer or a transcriber (see omni_hf.training.asr.build_transcriber)")
        scorer = SpeechScorer(transcriber, pause_config)
    if speaker not in model.speakers:
        raise ValueError(f"speaker {speaker!r} is not one of the model's speakers {list(model.speakers)}")
    rule = RankingRule.parse(rule)
    sampling = dict(talker_sampling or {})
    settings = dict(k=num_candidates, speaker=speaker, voice=voice_adapter, seed=seed, max_new=talker_max_new_tokens)
    settings["sampling"], settings["template"] = sampling, template
    settings["rule"], settings["keep_audio"] = str(rule), keep_audio
    fingerprint = _fingerprint(prompts, settings)
    out = Path(output_dir)
    state_path = out / STATE_FILE
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if state["fingerprint"] != fingerprint:
            raise ValueError(
                f"output_dir {str(out)!r} holds pairs built from other prompts or settings: use another directory"
            )
        if not resume:
            raise ValueError(f"output_dir {str(out)!r} holds an earlier build: pass resume=True or another directory")
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"output_dir {str(out)!r} is not empty and holds no pair build ({STATE_FILE} missing)")
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    (out / AUDIO).mkdir(exist_ok=True)
    records = _read_records(out)
    if [r["index"] for r in records] != list(range(len(records))):
        raise ValueError(f"{out / SHARDS} is inconsistent (missing prompts): rebuild in a new directory")
    if records:
        logger.info(f"Resuming the pair build in {out}: {len(records)} of {len(prompts)} prompts done")
    dataset_dir = out / DATASET
    if len(records) == len(prompts) and dataset_dir.is_dir():
        return load_from_disk(str(dataset_dir))
    _write_atomic(state_path, json.dumps({"fingerprint": fingerprint, "settings": settings, "total": len(prompts)}))
    voice_of = model.speakers[speaker]
    pending: list[dict] = []

    def flush():
        if pending:
            name = f"{pending[0]['index']:07d}-{pending[-1]['index']:07d}.jsonl"
            _write_atomic(out / SHARDS / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pending))
            records.extend(pending)
            pending.clear()

    bar = tqdm(total=len(prompts), initial=len(records), desc="Talker preference pairs", unit="prompt")
    for index in range(len(records), len(prompts)):
        row = prepare_prompt(model, processor, prompts[index], index, template)
        media = row.pop("media")
        torch.manual_seed(seed + index)
        candidates = sample_candidates(
            model,
            row["thinker_prompt_ids"],
            row["thinker_reply_ids"],
            num_candidates,
            speaker,
            voice_adapter,
            talker_max_new_tokens,
            media=media,
            **sampling,
        )
        scores, waveforms = [], {}
        noise_seeds = [seed + index * 1000 + k for k in range(len(candidates))]

        def vocode(k, candidates=candidates, waveforms=waveforms, noise_seeds=noise_seeds):
            if k not in waveforms:
                waveforms[k] = vocode_codes(
                    model, candidates[k], voice_of, voice_adapter, noise_seeds[k], token2wav_kwargs
                )
            return waveforms[k]

        for k, codes in enumerate(candidates):
            waveform = vocode(k) if getattr(scorer, "needs_audio", True) else None
            scores.append(scorer(row["text"], codes.tolist(), waveform, SAMPLING_RATE))
        usable = [k for k, codes in enumerate(candidates) if codes.numel() > 0]  # a pair side needs >= 1 code
        ranked = rank_candidates([scores[k] for k in usable], rule) if len(usable) >= 2 else None
        record = {"index": index, "pair": None}
        if ranked is not None:
            best, worst = usable[ranked[0]], usable[ranked[1]]
            files = {}
            for side, k in (("chosen", best), ("rejected", worst)):
                if keep_audio:
                    name = f"{index:07d}-{side}.wav"
                    entry = wav_entry(vocode(k), SAMPLING_RATE, name)
                    (out / AUDIO / name).write_bytes(entry["bytes"])
                    files[f"{side}_audio"] = name
                metrics = scores[k].metrics()
                files[f"{side}_scores"] = json.dumps(metrics)
                files[f"{side}_score"] = rule.score(scores[k])
                if "speaker_similarity" in metrics:
                    files[f"{side}_speaker_similarity"] = metrics["speaker_similarity"]
            record["pair"] = {
                **row,
                **files,
                "source": "talker_samples",
                "prompt_index": index,
                "speaker": speaker,
                "speaker_bos_id": voice_of.bos_token_id,
                "chosen_codes": candidates[best].tolist(),
                "rejected_codes": candidates[worst].tolist(),
                "chosen_wer": scores[best].wer,
                "rejected_wer": scores[worst].wer,
                "chosen_pause_error": scores[best].pause_error,
                "rejected_pause_error": scores[worst].pause_error,
                "chosen_transcript": scores[best].transcript,
                "rejected_transcript": scores[worst].transcript,
                "candidate_wers": [s.wer for s in scores],
                "candidate_pause_errors": [s.pause_error for s in scores],
            }
        pending.append(record)
        bar.update(1)
        if len(pending) >= save_every:
            flush()
    flush()
    bar.close()
    pairs = [r["pair"] for r in records if r["pair"] is not None]
    if not pairs:
        raise ValueError(f"no preference pairs: every prompt's {num_candidates} candidates tied; sample more (K)")
    logger.info(f"{len(pairs)} pairs from {len(prompts)} prompts ({len(prompts) - len(pairs)} ties dropped)")
    if keep_audio:
        for pair in pairs:
            for side in ("chosen_audio", "rejected_audio"):
                pair[side] = {"bytes": (out / AUDIO / pair[side]).read_bytes(), "path": pair[side]}
    dataset = cast_audio_columns(Dataset.from_list(pairs))
    save_dataset_atomic(dataset, dataset_dir)
    return dataset


def vocode_codes(model, codes, speaker, voice_adapter, seed: int, token2wav_kwargs: dict | None = None):
    """Speech codes `(m,)` → float32 waveform `(samples,)` at 24 kHz (token2wav noise seeded by `seed`)."""
    noise = torch.Generator().manual_seed(seed)
    with model.voice_adapters.use(voice_adapter):
        wave = model.codes_to_waveform(codes, speaker, generator=noise, **(token2wav_kwargs or {}))
    return wave.float().cpu().numpy()


def save_dataset_atomic(dataset: Dataset, directory: str | os.PathLike) -> None:
    """`save_to_disk` staged (`omni_hf.common.staged_save`): written beside `directory`, then moved in; the
    previous dataset's files are replaced, other files kept."""
    with staged_save(directory, "dataset") as stage:
        dataset.save_to_disk(str(stage))


def check_pair_dataset(dataset, name: str = "dataset") -> Dataset:
    """Raise a ValueError naming what is missing unless `dataset` has the columns training needs."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"{name} must be a datasets.Dataset, got {type(dataset).__name__}")
    missing = [c for c in TRAINING_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{name} is missing columns {missing}; a Talker preference dataset needs {list(TRAINING_COLUMNS)} "
            f"(has {dataset.column_names}); build one with build_preference_pairs"
        )
    if len(dataset) == 0:
        raise ValueError(f"{name} has no rows")
    return dataset


def load_preference_pairs(path: str | os.PathLike) -> Dataset:
    """A pair dataset saved by `build_preference_pairs` (its folder, or the `dataset/` inside), checked."""
    path = Path(path)
    if (path / DATASET).is_dir():
        path = path / DATASET
    if not path.is_dir():
        raise ValueError(f"pair dataset {str(path)!r} does not exist (expected a Dataset.save_to_disk folder)")
    check_complete(path)
    return check_pair_dataset(load_from_disk(str(path)), str(path))


__all__ = [
    "TRAINING_COLUMNS",
    "encode_media_prompt",
    "has_media",
    "build_preference_pairs",
    "check_pair_dataset",
    "load_preference_pairs",
    "prepare_prompt",
    "sample_candidates",
    "save_dataset_atomic",
]
