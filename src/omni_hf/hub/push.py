"""Publish omni_hf artifacts to the Hub through the libraries' own `push_to_hub`, each with its generated card.

| artifact | pushed by | commits |
|---|---|---|
| Thinker, speech tokenizer | `PreTrainedModel.push_to_hub` (+ `ProcessorMixin.push_to_hub`) | model, processor, card |
| full model | `HfApi.upload_folder` of `save_pretrained` (its `token2wav/` pipeline is two folders deep, which transformers' `push_to_hub` does not upload) | one |
| token2wav | `DiffusionPipeline.push_to_hub` | pipeline, card |
| speaker set | `SpeakerBank.push_to_hub` (`huggingface_hub.ModelHubMixin`, card from our template) | one |
| voice adapter | `HfApi.upload_folder` of `model.voice_adapters.save` (PEFT files + `voice.json` + DiT part + card) | one |
| preference pairs | `datasets.Dataset.push_to_hub` | data, card |

Every `push_*` checks its inputs first (repo id, token, card figures) before anything is uploaded. The card is
rendered from `model_cards/` and committed after the files, keeping the YAML the library wrote (e.g. `datasets`'
`configs` / `dataset_info`) under ours. A failed upload raises `PushError` naming what was published; a repo created
for a push that then failed is deleted again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, DatasetCard, HfApi, ModelCard, get_token
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id
from transformers.utils import logging

from .cards import count_parameters, render_card

logger = logging.get_logger(__name__)

CARD_FILE = "README.md"
UPLOAD_ERRORS = (HfHubHTTPError, OSError, ValueError)
# The staged-save bookkeeping (`omni_hf.common.staged_save`) stays local, at the top level and in subfolders
# (`token2wav/.omni_hf_saved.json`); fnmatch's `*` crosses `/`, a bare `.omni_hf_*` matches the top level only.
LOCAL_ONLY_PATTERNS = [".omni_hf_*", "*/.omni_hf_*"]


class PushError(RuntimeError):
    """An upload to the Hub failed; the message says what, if anything, was published."""


class UploadPlan(str):
    """What a push with `dry_run=True, list_files=True` would upload: the card text (this string) and `files`, the
    paths in the repo (sorted), staged exactly as the real push stages them, the card included."""

    files: list[str]

    def __new__(cls, card, files):
        plan = super().__new__(cls, str(card))
        plan.files = sorted(files)
        return plan


def folder_upload_files(folder: str | os.PathLike, ignore_patterns: Sequence[str] | None = None) -> list[str]:
    """The repo paths `publish_folder` uploads from `folder` (huggingface_hub's own filter and default ignores)."""
    folder = Path(folder)
    paths = sorted(path.relative_to(folder).as_posix() for path in folder.glob("**/*") if path.is_file())
    patterns = [*(ignore_patterns or []), *LOCAL_ONLY_PATTERNS, *DEFAULT_IGNORE_PATTERNS]
    return list(filter_repo_objects(paths, ignore_patterns=patterns))


def _staged_plan(card, stage) -> UploadPlan:
    """Run `stage(folder)` (what the push would upload; it may return the subfolder it wrote, which is then the one
    uploaded) in a temporary folder, then list it with the card."""
    with tempfile.TemporaryDirectory(prefix="omni_hf_plan_") as folder:
        staged = stage(Path(folder))
        uploaded = Path(staged) if isinstance(staged, (str, os.PathLike)) else Path(folder)
        if card is not None:
            (uploaded / CARD_FILE).write_text(str(card))
        return UploadPlan(card, folder_upload_files(uploaded))


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


def publish(
    repo_id: str,
    parts: Sequence,
    card=None,
    *,
    repo_type: str = "model",
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    list_files: bool = False,
) -> CommitInfo:
    """Push each of `parts` (objects with the libraries' `push_to_hub`: models, processors, pipelines, datasets,
    hub-mixin objects; `None` entries are skipped) to `repo_id`, then `card` (text or a huggingface_hub card).

    Returns the last commit. With `dry_run`, nothing is uploaded and the card is returned; with `list_files` too, an
    [`UploadPlan`] (each part's `save_pretrained`, which its `push_to_hub` uploads, is staged and listed)."""
    check_repo_id(repo_id)
    parts = [part for part in parts if part is not None]
    if dry_run:
        if not list_files:
            return card

        def save_parts(folder):  # what each part's `push_to_hub` writes, then uploads
            for part in parts:
                part.save_pretrained(folder)

        return _staged_plan(card, save_parts)
    token = resolve_token(token)
    api = HfApi(token=token)
    created = not api.repo_exists(repo_id, repo_type=repo_type)
    commits: list[CommitInfo] = []
    try:
        for part in parts:
            message = commit_message or f"Upload {type(part).__name__}"
            commits.append(part.push_to_hub(repo_id, token=token, private=private, commit_message=message))
    except UPLOAD_ERRORS as error:
        if created:
            _delete_quietly(api, repo_id, repo_type)
        published = f"{len(commits)} of {len(parts)} parts were published" if commits and not created else None
        raise PushError(f"Pushing to {repo_id} failed, {published or 'nothing was published'}: {error}") from error
    if card is None:
        return commits[-1]
    try:
        return push_card(repo_id, card, repo_type=repo_type, token=token, parent_commit=commits[-1].oid)
    except UPLOAD_ERRORS as error:
        raise PushError(
            f"The files were pushed to {repo_id} (commit {commits[-1].oid}) but its card upload failed: {error}"
        ) from error


def push_card(repo_id: str, card, *, repo_type: str = "model", token=None, parent_commit=None) -> CommitInfo:
    """Commit `card` as README.md, keeping the YAML keys the repo's card has that ours does not."""
    kind = DatasetCard if repo_type == "dataset" else ModelCard
    ours = kind(str(card))
    try:
        data = kind.load(repo_id, repo_type=repo_type, token=token).data.to_dict()
    except EntryNotFoundError:
        data = {}
    final = kind(f"---\n{type(ours.data)(**(data | ours.data.to_dict())).to_yaml()}\n---\n{ours.text}")
    return HfApi(token=token).create_commit(
        repo_id,
        [CommitOperationAdd(CARD_FILE, str(final).encode())],
        commit_message="Add the card",
        repo_type=repo_type,
        parent_commit=parent_commit,
    )


def publish_folder(
    folder: str | os.PathLike,
    repo_id: str,
    card=None,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload with omni_hf",
    ignore_patterns: Sequence[str] | None = None,
    repo_type: str = "model",
    dry_run: bool = False,
    list_files: bool = False,
) -> CommitInfo:
    """Upload a saved folder in ONE commit (`HfApi.upload_folder`), `card` written into it as README.md first: for
    artifacts no library's `push_to_hub` uploads whole (the full model's nested `token2wav/` pipeline, a voice
    adapter's PEFT files beside its `voice.json` and DiT part, a recipe's output folder). The staged-save
    bookkeeping (`.omni_hf_*`, in any subfolder) is never uploaded. With `dry_run` nothing is written or uploaded:
    the card is returned, or with `list_files` an [`UploadPlan`] (the card and `folder_upload_files`)."""
    check_repo_id(repo_id)
    if dry_run:
        if not list_files:
            return card
        files = folder_upload_files(folder, ignore_patterns)
        return UploadPlan(card, sorted({*files, CARD_FILE}) if card is not None else files)
    token = resolve_token(token)
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise ValueError(f"Nothing to push: {folder} is not a folder with files")
    if card is not None:
        (folder / CARD_FILE).write_text(str(card))
    api = HfApi(token=token)
    created = not api.repo_exists(repo_id, repo_type=repo_type)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type=repo_type,
            commit_message=commit_message,
            ignore_patterns=[*(ignore_patterns or []), *LOCAL_ONLY_PATTERNS],  # staged-save bookkeeping stays local
        )
    except UPLOAD_ERRORS as error:
        if created:
            _delete_quietly(api, repo_id, repo_type)
        raise PushError(f"Pushing to {repo_id} failed, nothing was published: {error}") from error
    logger.info(f"Pushed {folder} to {repo_id} ({info.commit_url})")
    return info


def _delete_quietly(api: HfApi, repo_id: str, repo_type: str) -> None:
    try:
        api.delete_repo(repo_id, repo_type=repo_type)
    except (HfHubHTTPError, OSError) as error:
        logger.warning(f"Could not delete the repo {repo_id} created for the failed push: {error}")


def push_model(
    model,
    repo_id: str,
    *,
    processor=None,
    results=None,
    token=None,
    private=None,
    dry_run=False,
    list_files=False,
    **card,
) -> CommitInfo:
    """Push a full `OmniForConditionalGeneration` (or a folder saved in our layout, processor files included), its
    processor and its card in one commit (`save_pretrained` into a staging folder, then `publish_folder`).
    `dry_run`: the card; with `list_files`, an [`UploadPlan`] (the model staged in a temporary folder and listed)."""
    from ..omni import OmniForConditionalGeneration

    if isinstance(model, (str, os.PathLike)):
        source = Path(model)
        if not (source / "config.json").is_file():
            raise ValueError(f"{source} is not a saved model folder (no config.json)")
        check_repo_id(repo_id)
        model = OmniForConditionalGeneration.from_pretrained(source)
        processor = processor or _saved_processor(source)
    if not isinstance(model, OmniForConditionalGeneration):
        raise TypeError(f"push_model takes an OmniForConditionalGeneration or its folder, got {type(model).__name__}")
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
    check_repo_id(repo_id)

    def stage_model(folder):
        model.save_pretrained(folder)
        if processor is not None:
            processor.save_pretrained(folder)

    if dry_run:
        return _staged_plan(text, stage_model) if list_files else text
    resolve_token(token)
    with tempfile.TemporaryDirectory(prefix="omni_hf_model_") as stage:
        stage_model(stage)
        hub = dict(token=token, private=private, commit_message="Upload Qwen2.5-Omni (omni_hf layout)")
        return publish_folder(stage, repo_id, text, **hub)


def push_thinker(
    thinker,
    repo_id: str,
    *,
    processor=None,
    results=None,
    token=None,
    private=None,
    dry_run=False,
    list_files=False,
    **card,
) -> CommitInfo:
    """Push the Thinker alone (text replies), e.g. `model.thinker`, and its processor, then its card."""
    from ..omni import OmniForConditionalGeneration
    from ..thinker import OmniThinkerForConditionalGeneration

    if isinstance(thinker, OmniForConditionalGeneration):
        thinker = thinker.thinker
    if not isinstance(thinker, OmniThinkerForConditionalGeneration):
        raise TypeError(f"push_thinker takes an OmniThinkerForConditionalGeneration, got {type(thinker).__name__}")
    base = card.pop("base_model", None) or thinker.config._name_or_path
    details = dict(base_model=base, thinker_parameters=count_parameters(thinker), remote_code=True)  # save writes it
    text = render_card("thinker", repo_id, results=results, **details, **card)
    hub = dict(token=token, private=private, dry_run=dry_run, list_files=list_files)
    return publish(repo_id, [thinker, processor], text, commit_message="Upload the Qwen2.5-Omni Thinker", **hub)


def push_token2wav(
    pipeline, repo_id: str, *, results=None, token=None, private=None, dry_run=False, list_files=False, **card
):
    """Push an `OmniToken2WavPipeline` (e.g. `model.token2wav`) with `DiffusionPipeline.push_to_hub`, then its card."""
    from ..token2wav import OmniToken2WavPipeline

    pipeline = getattr(pipeline, "pipeline", pipeline)  # the full model's registered part wraps the pipeline
    if not isinstance(pipeline, OmniToken2WavPipeline):
        raise TypeError(f"push_token2wav takes an OmniToken2WavPipeline, got {type(pipeline).__name__}")
    parts = dict(dit_parameters=count_parameters(pipeline.dit), vocoder_parameters=count_parameters(pipeline.vocoder))
    steps = card.pop("num_inference_steps", 10)
    text = render_card(
        "token2wav", repo_id, results=results, scheduler=type(pipeline.scheduler).__name__, num_inference_steps=steps,
        **parts, **card,
    )  # fmt: skip
    hub = dict(token=token, private=private, dry_run=dry_run, list_files=list_files)
    return publish(repo_id, [pipeline], text, commit_message="Upload the Qwen2.5-Omni token2wav pipeline", **hub)


def push_speakers(
    speakers, repo_id: str, *, results=None, token=None, private=None, dry_run=False, list_files=False, **card
):
    """Push a `SpeakerBank` (or a model's `speakers`, or a folder holding speakers.json + .safetensors) in one
    commit with its card (`SpeakerBank.push_to_hub`, huggingface_hub's `ModelHubMixin`)."""
    from ..voices.speakers import SpeakerBank

    if isinstance(speakers, (str, os.PathLike)):
        speakers = SpeakerBank.load(speakers)
    if not isinstance(speakers, SpeakerBank):
        raise TypeError(f"push_speakers takes a SpeakerBank or its folder, got {type(speakers).__name__}")
    if not len(speakers):
        raise ValueError("push_speakers: the speaker set is empty, nothing to push")
    card_kwargs = dict(repo_id=repo_id, results=results, **card)
    text = speakers.generate_model_card(**card_kwargs)  # checks the figures before anything is uploaded
    check_repo_id(repo_id)
    if dry_run:
        return _staged_plan(text, speakers.save_pretrained) if list_files else text
    token = resolve_token(token)
    api = HfApi(token=token)
    created = not api.repo_exists(repo_id)
    try:
        return speakers.push_to_hub(
            repo_id,
            token=token,
            private=private,
            commit_message="Upload Qwen2.5-Omni speakers",
            model_card_kwargs=card_kwargs,
        )
    except UPLOAD_ERRORS as error:
        if created:
            _delete_quietly(api, repo_id, "model")
        raise PushError(f"Pushing to {repo_id} failed, nothing was published: {error}") from error


def push_voice_adapter(
    model,
    name: str,
    repo_id: str,
    *,
    results=None,
    token=None,
    private=None,
    dry_run=False,
    list_files=False,
    own_card: str | os.PathLike | None = None,
    **card,
):
    """Push voice adapter `name` loaded in `model.voice_adapters` (PEFT files + voice.json + DiT part) with its card in one
    commit. `base_model` (card keyword) should be the Hub id of the model the adapter was trained on.

    `own_card`: the adapter's saved card (its folder's README.md, e.g. the DPO recipe's, with its figures and training
    table). It is kept, with its placeholders (`YOUR_USER/...`, `BASE_MODEL`) filled and the metadata it lacks added
    (`omni_hf.hub.cards.keep_card`); only the plain card `voice_adapters.save` writes (no figures) is re-rendered."""
    from .cards import is_own_card, keep_card

    if name not in model.voice_adapters:
        known = ", ".join(model.voice_adapters.names) or "none loaded"
        raise ValueError(f"Unknown voice {name!r}; loaded voices: {known}")
    base = card.pop("base_model", None) or model.config._name_or_path
    own = Path(own_card) if own_card is not None else None
    if own is not None and own.is_file() and is_own_card(own.read_text()):
        text = keep_card(own.read_text(), "voice", repo_id, results=results, base_model=base)
    else:
        text = model.voice_adapters.card(name, repo_id, results=results, base_model=base, **card)
    check_repo_id(repo_id)

    def stage_adapter(folder):
        return model.voice_adapters.save(name, folder)

    if dry_run:
        return _staged_plan(text, stage_adapter) if list_files else text
    resolve_token(token)
    with tempfile.TemporaryDirectory(prefix="omni_hf_voice_") as stage:
        saved = stage_adapter(stage)
        hub = dict(token=token, private=private, commit_message=f"Upload voice adapter {name}")
        return publish_folder(saved, repo_id, text, **hub)


def push_preference_dataset(
    dataset,
    repo_id: str,
    *,
    results=None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload Talker DPO preference pairs",
    dry_run: bool = False,
    list_files: bool = False,
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
    check_repo_id(repo_id)

    def stage_rows(folder):
        (Path(folder) / "data").mkdir()
        dataset.to_parquet(str(Path(folder) / "data" / "train-00000-of-00001.parquet"))

    if dry_run:
        return _staged_plan(text, stage_rows) if list_files else text
    resolve_token(token)
    # One commit for the rows and their card: `Dataset.push_to_hub` cannot carry a card in its commit.
    with tempfile.TemporaryDirectory(prefix="omni_hf_pairs_") as stage:
        stage_rows(stage)
        return publish_folder(
            stage, repo_id, text, token=token, private=private, commit_message=commit_message, repo_type="dataset"
        )


def _saved_processor(folder: Path):
    """The `OmniProcessor` saved in `folder`, or None when it holds no processor files."""
    if not any((folder / name).is_file() for name in ("processor_config.json", "tokenizer_config.json")):
        return None
    from ..processing import OmniProcessor

    return OmniProcessor.from_pretrained(folder)


def _pipeline_parameters(pipeline) -> str:
    if pipeline is None:
        return "not included"
    import torch

    holder = torch.nn.ModuleList([pipeline.dit, pipeline.vocoder])
    return count_parameters(holder)
