"""Publish omni_hf artifacts to the Hub, each with its generated card, in one commit.

Every `push_*` function checks its inputs first (repo id, token, what is being pushed), writes the artifact and its
card into a temporary folder (or reads an already saved folder), then creates the repo if needed and uploads all
files in ONE commit: the Hub shows either the previous state or the complete new one. A failed upload raises
`PushError` (and a repo created for it is deleted again); it never returns as if it had worked.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from transformers.utils import logging

from .cards import count_parameters, render_card

logger = logging.get_logger(__name__)

CARD_FILE = "README.md"
SKIPPED = {".git", ".cache", "__pycache__", ".DS_Store"}


class PushError(RuntimeError):
    """An upload to the Hub failed; nothing new was published (see the message for details)."""


def check_repo_id(repo_id) -> str:
    """`namespace/name` as the Hub accepts it, else a ValueError naming the input."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"Invalid repo id {repo_id!r}: expected 'namespace/name', e.g. 'my-user/my-omni-model'")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Invalid repo id {repo_id!r}: {error}") from None
    return repo_id


def resolve_token(token: str | None) -> str:
    """The token to push with: the argument, else `HF_TOKEN` / the saved login; none is a clear error."""
    token = token or get_token()
    if not token:
        raise ValueError(
            "Pushing to the Hub needs a write token: pass token=..., set HF_TOKEN, or run `hf auth login`"
        )
    return token


def upload_folder_as_commit(
    folder: str | os.PathLike,
    repo_id: str,
    card,
    *,
    token: str | None = None,
    repo_type: str = "model",
    private: bool | None = None,
    commit_message: str = "Upload with omni_hf",
    exclude: Iterable[str] = (),
    dry_run: bool = False,
) -> CommitInfo:
    """Upload every file under `folder` plus `card` (as README.md) to `repo_id` in one commit.

    With `dry_run`, nothing is uploaded and the card is returned (what `omni-hf card` shows)."""
    check_repo_id(repo_id)
    if dry_run:
        return card
    token = resolve_token(token)
    folder = Path(folder)
    exclude = set(exclude) | SKIPPED
    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not any(part in exclude for part in p.relative_to(folder).parts)
        and p.relative_to(folder).as_posix() != CARD_FILE
    ]
    if not files:
        raise ValueError(f"Nothing to push: {folder} has no files")
    operations = [CommitOperationAdd(p.relative_to(folder).as_posix(), str(p)) for p in files]
    operations.append(CommitOperationAdd(CARD_FILE, str(card).encode()))
    api = HfApi(token=token)
    created = False
    try:
        created = not api.repo_exists(repo_id, repo_type=repo_type)
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type)
    except (HfHubHTTPError, OSError, ValueError) as error:
        if created:
            _delete_quietly(api, repo_id, repo_type)
        raise PushError(f"Pushing to {repo_id} failed, nothing was published: {error}") from error
    logger.info(f"Pushed {len(operations)} files to {repo_id} ({info.commit_url})")
    return info


def _delete_quietly(api: HfApi, repo_id: str, repo_type: str) -> None:
    try:
        api.delete_repo(repo_id, repo_type=repo_type)
    except (HfHubHTTPError, OSError) as error:
        logger.warning(f"Could not delete the empty repo {repo_id} created for the failed push: {error}")


def _staged(repo_id: str, token: str | None, dry_run: bool = False):
    """Check the cheap preconditions before anything is written, then give a temp dir for the files."""
    check_repo_id(repo_id)
    if not dry_run:
        resolve_token(token)
    return tempfile.TemporaryDirectory(prefix="omni_hf_push_")


def push_model(
    model,
    repo_id: str,
    *,
    processor=None,
    results=None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload Qwen2.5-Omni (omni_hf layout)",
    dry_run: bool = False,
    **card,
) -> CommitInfo:
    """Push a full `OmniForConditionalGeneration` (or a folder saved in our layout) with its card."""
    from ..omni import OmniForConditionalGeneration

    source = None
    if isinstance(model, (str, os.PathLike)):  # a saved folder is uploaded as it is (processor files included)
        source = Path(model)
        if not (source / "config.json").is_file():
            raise ValueError(f"{source} is not a saved model folder (no config.json)")
        _staged(repo_id, token, dry_run).cleanup()
        model = OmniForConditionalGeneration.from_pretrained(source)
    if not isinstance(model, OmniForConditionalGeneration):
        raise TypeError(f"push_model takes an OmniForConditionalGeneration or its folder, got {type(model).__name__}")
    with _staged(repo_id, token, dry_run) as stage:
        if source is None:
            model.save_pretrained(stage)
            if processor is not None:
                processor.save_pretrained(stage)
        speakers = model.speakers.names()
        text = render_card(
            "model",
            repo_id,
            results=results,
            base_model=card.pop("base_model", None) or model.config._name_or_path,
            thinker_parameters=count_parameters(model.thinker),
            talker_parameters=count_parameters(model.talker) if model.talker is not None else "not included",
            token2wav_parameters=_pipeline_parameters(model.token2wav),
            speakers=speakers,
            speaker=card.pop("speaker", speakers[0] if speakers else "Chelsie"),
            **card,
        )
        return upload_folder_as_commit(
            source or stage,
            repo_id,
            text,
            token=token,
            private=private,
            commit_message=commit_message,
            dry_run=dry_run,
        )


def push_thinker(
    thinker,
    repo_id: str,
    *,
    processor=None,
    results=None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload the Qwen2.5-Omni Thinker",
    dry_run: bool = False,
    **card,
) -> CommitInfo:
    """Push the Thinker alone (text replies), e.g. `model.thinker`, with its card."""
    from ..omni import OmniForConditionalGeneration
    from ..thinker import OmniThinkerForConditionalGeneration

    if isinstance(thinker, OmniForConditionalGeneration):
        thinker = thinker.thinker
    if not isinstance(thinker, OmniThinkerForConditionalGeneration):
        raise TypeError(f"push_thinker takes an OmniThinkerForConditionalGeneration, got {type(thinker).__name__}")
    with _staged(repo_id, token, dry_run) as stage:
        thinker.save_pretrained(stage)
        if processor is not None:
            processor.save_pretrained(stage)
        text = render_card(
            "thinker",
            repo_id,
            results=results,
            base_model=card.pop("base_model", None) or thinker.config._name_or_path,
            thinker_parameters=count_parameters(thinker),
            remote_code=bool(getattr(thinker.config, "auto_map", None)),
            **card,
        )
        return upload_folder_as_commit(
            stage, repo_id, text, token=token, private=private, commit_message=commit_message, dry_run=dry_run
        )


def push_token2wav(
    pipeline,
    repo_id: str,
    *,
    results=None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload the Qwen2.5-Omni token2wav pipeline",
    dry_run: bool = False,
    **card,
) -> CommitInfo:
    """Push an `OmniToken2WavPipeline` (e.g. `model.token2wav`) as a Diffusers pipeline repo with its card."""
    from ..token2wav import OmniToken2WavPipeline

    if not isinstance(pipeline, OmniToken2WavPipeline):
        raise TypeError(f"push_token2wav takes an OmniToken2WavPipeline, got {type(pipeline).__name__}")
    with _staged(repo_id, token, dry_run) as stage:
        pipeline.save_pretrained(stage)
        text = render_card(
            "token2wav",
            repo_id,
            results=results,
            dit_parameters=count_parameters(pipeline.dit),
            vocoder_parameters=count_parameters(pipeline.vocoder),
            scheduler=type(pipeline.scheduler).__name__,
            num_inference_steps=card.pop("num_inference_steps", 10),
            **card,
        )
        return upload_folder_as_commit(
            stage, repo_id, text, token=token, private=private, commit_message=commit_message, dry_run=dry_run
        )


def push_speakers(
    speakers,
    repo_id: str,
    *,
    results=None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload Qwen2.5-Omni speakers",
    dry_run: bool = False,
    **card,
) -> CommitInfo:
    """Push a `SpeakerBank` (or a model's `speakers`, or a folder holding speakers.json + .safetensors)."""
    from ..voices.speakers import SpeakerBank

    if isinstance(speakers, (str, os.PathLike)):
        speakers = SpeakerBank.load(speakers)
    if not isinstance(speakers, SpeakerBank):
        raise TypeError(f"push_speakers takes a SpeakerBank or its folder, got {type(speakers).__name__}")
    if not len(speakers):
        raise ValueError("push_speakers: the speaker set is empty, nothing to push")
    with _staged(repo_id, token, dry_run) as stage:
        speakers.save(stage)
        rows = [
            {
                "name": n,
                "bos_token_id": speakers[n].bos_token_id,
                "seconds": f"{speakers[n].ref_mel.shape[1] / 100:.2f}",
            }
            for n in speakers.names()
        ]
        text = render_card("speakers", repo_id, results=results, speakers=speakers.names(), speaker_rows=rows, **card)
        return upload_folder_as_commit(
            stage, repo_id, text, token=token, private=private, commit_message=commit_message, dry_run=dry_run
        )


def push_voice_adapter(
    model,
    name: str,
    repo_id: str,
    *,
    results=None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    **card,
) -> CommitInfo:
    """Push voice adapter `name` loaded in `model.voices` (PEFT files + voice.json) with its card.

    `base_model` (card keyword) should be the Hub id of the model the adapter was trained on.
    """
    if name not in model.voices:
        known = ", ".join(model.voices.names) or "none loaded"
        raise ValueError(f"Unknown voice {name!r}; loaded voices: {known}")
    with _staged(repo_id, token, dry_run) as stage:
        saved = model.voices.save(name, stage)
        base = card.pop("base_model", None) or model.config._name_or_path
        text = model.voices.card(name, repo_id, results=results, base_model=base, **card)
        return upload_folder_as_commit(
            saved,
            repo_id,
            text,
            token=token,
            private=private,
            commit_message=commit_message or f"Upload voice adapter {name}",
            dry_run=dry_run,
        )


def push_preference_dataset(
    dataset,
    repo_id: str,
    *,
    results=None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload Talker DPO preference pairs",
    dry_run: bool = False,
    **card,
) -> CommitInfo:
    """Push preference pairs with their card in ONE commit: a `datasets.Dataset`, a `save_to_disk` folder, or what
    `recipes/talker_dpo.py` writes (`<output_dir>/pairs`, holding `dataset/`).

    Accepted columns: the Talker pair format (`omni_hf.training.pair_sources`: `chosen_codes` / `rejected_codes`
    and the Thinker ids, playable `chosen_audio` / `rejected_audio` kept), judged recordings only (`chosen_audio` /
    `rejected_audio` + `text`; the DPO recipe encodes them) or TRL's (`chosen` / `rejected`). The rows
    are written as one Parquet file (`data/train-00000-of-00001.parquet`, features in its metadata) next to the
    card, whose `configs` entry points `load_dataset(repo_id)` at it.
    """
    import datasets as hf_datasets

    if isinstance(dataset, (str, os.PathLike)):
        folder = Path(dataset) / "dataset" if (Path(dataset) / "dataset").is_dir() else Path(dataset)
        if not folder.is_dir():
            raise FileNotFoundError(f"{dataset} is not a folder saved with Dataset.save_to_disk (or a pair build)")
        dataset = hf_datasets.load_from_disk(str(folder))
    if not isinstance(dataset, hf_datasets.Dataset):
        raise TypeError(
            f"push_preference_dataset takes a datasets.Dataset or its folder, got {type(dataset).__name__}"
        )
    columns = set(dataset.column_names)
    accepted = ({"chosen_codes", "rejected_codes"}, {"chosen_audio", "rejected_audio"}, {"chosen", "rejected"})
    if not any(pair <= columns for pair in accepted):
        raise ValueError(
            "A preference dataset needs 'chosen_codes' and 'rejected_codes' (Talker pairs), 'chosen_audio' and "
            f"'rejected_audio' (judged recordings) or 'chosen' and 'rejected' (TRL) columns; it has {sorted(columns)}"
        )
    if dataset.num_rows == 0:
        raise ValueError("push_preference_dataset: the dataset has no rows")
    sources = {}
    for source in dataset["source"] if "source" in columns else []:
        sources[source] = sources.get(source, 0) + 1
    text = render_card(
        "dataset",
        repo_id,
        results=results,
        num_rows=dataset.num_rows,
        columns=[(name, str(feature)) for name, feature in dataset.features.items()],
        sources=sources,
        dataset_info={  # features travel in the Parquet file's metadata
            "splits": [{"name": "train", "num_bytes": dataset.data.nbytes, "num_examples": dataset.num_rows}],
        },
        **card,
    )
    with _staged(repo_id, token, dry_run) as stage:
        if dry_run:
            return text
        (Path(stage) / "data").mkdir()
        dataset.to_parquet(str(Path(stage) / "data" / "train-00000-of-00001.parquet"))
        return upload_folder_as_commit(
            stage, repo_id, text, token=token, repo_type="dataset", private=private, commit_message=commit_message
        )


def _pipeline_parameters(pipeline) -> str:
    if pipeline is None:
        return "not included"
    import torch

    holder = torch.nn.ModuleList([pipeline.dit, pipeline.vocoder])
    return count_parameters(holder)


__all__ = [
    "PushError",
    "check_repo_id",
    "push_model",
    "push_preference_dataset",
    "push_speakers",
    "push_thinker",
    "push_token2wav",
    "push_voice_adapter",
    "resolve_token",
    "upload_folder_as_commit",
]
