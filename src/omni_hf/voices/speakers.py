"""Speakers: the voice conditioning of the Talker (bos entry) and of the DiT (x-vector + reference mel).

Official checkpoints ship `spk_dict.pt` (`{name: {"bos_token": int, "cond": (1, 192), "ref_mel": (1, T, 80)}}`),
read here with `torch.load(weights_only=True)`: a file that needs code execution to unpickle is refused. Our own
format is `speakers.safetensors` (tensors `"{name}.cond"`, `"{name}.ref_mel"`) + `speakers.json` (bos ids).
"""

import json
import os
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import ModelHubMixin, snapshot_download
from safetensors.torch import load_file, save_file

from ..common.staged_save import check_complete, staged_save

SPEAKERS_WEIGHTS = "speakers.safetensors"
SPEAKERS_INDEX = "speakers.json"
OFFICIAL_SPEAKERS = "spk_dict.pt"
FORMAT = "omni_hf-speakers/1"
SPEAKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_. -]{0,63}")


@dataclass
class Speaker:
    """One voice.

    Attributes:
        name: how `generate(speaker=...)` selects it.
        bos_token_id: Thinker-vocabulary id whose embedding starts the Talker's reply (selects the voice there).
        speaker_embedding: `(1, enc_emb_dim)` speaker x-vector for the DiT (the official files' `cond`).
        reference_mel: `(1, frames, 80)` reference mel for the DiT's speaker encoder (the official files' `ref_mel`).
    """

    name: str
    bos_token_id: int
    speaker_embedding: torch.Tensor
    reference_mel: torch.Tensor

    def __post_init__(self):
        if not isinstance(self.name, str) or not SPEAKER_NAME.fullmatch(self.name):
            raise ValueError(
                f"Speaker name {self.name!r}: use 1-64 letters, digits, spaces, '_', '-' or '.', starting with a letter "
                "or digit (it names the speaker in requests, files and cards)"
            )
        if not isinstance(self.bos_token_id, int) or isinstance(self.bos_token_id, bool):
            raise ValueError(f"Speaker {self.name!r}: bos_token_id must be an int, got {self.bos_token_id!r}")
        cond, ref_mel = torch.as_tensor(self.speaker_embedding), torch.as_tensor(self.reference_mel)
        if cond.dim() == 1:
            cond = cond.unsqueeze(0)
        if ref_mel.dim() == 2:
            ref_mel = ref_mel.unsqueeze(0)
        if cond.dim() != 2 or cond.shape[0] != 1:
            raise ValueError(
                f"Speaker {self.name!r}: speaker_embedding must have shape (1, dim), got {tuple(cond.shape)}"
            )
        if ref_mel.dim() != 3 or ref_mel.shape[0] != 1 or ref_mel.shape[1] == 0:
            raise ValueError(
                f"Speaker {self.name!r}: reference_mel must have shape (1, frames, mels), got {tuple(ref_mel.shape)}"
            )
        self.speaker_embedding, self.reference_mel = cond.float(), ref_mel.float()

    @property
    def cond(self) -> torch.Tensor:
        """Deprecated name of `speaker_embedding` (the official files' key), removed in omni_hf 0.3."""
        warnings.warn("Speaker.cond is deprecated: use Speaker.speaker_embedding", FutureWarning, stacklevel=2)
        return self.speaker_embedding

    @property
    def ref_mel(self) -> torch.Tensor:
        """Deprecated name of `reference_mel` (the official files' key), removed in omni_hf 0.3."""
        warnings.warn("Speaker.ref_mel is deprecated: use Speaker.reference_mel", FutureWarning, stacklevel=2)
        return self.reference_mel


class SpeakerBank(Mapping, ModelHubMixin, library_name="omni_hf", tags=["omni_hf", "qwen2.5-omni", "speakers"]):
    """The speakers of a model, by name. `save`/`load` a folder; `push_to_hub`/`from_pretrained` a Hub repo
    (huggingface_hub's `ModelHubMixin`: one commit with the card of `generate_model_card`)."""

    def __init__(self, speakers: dict[str, Speaker] | None = None):
        self._speakers: dict[str, Speaker] = dict(speakers or {})
        self._hub_mixin_config = None  # ModelHubMixin writes no config.json: speakers.json is the index

    def __getitem__(self, name: str) -> Speaker:
        if name not in self._speakers:
            known = ", ".join(sorted(self._speakers)) or "none loaded"
            raise ValueError(f"Unknown speaker {name!r}; known speakers: {known}")
        return self._speakers[name]

    def __contains__(self, name) -> bool:  # Mapping's default relies on KeyError; ours raises a clearer ValueError
        return name in self._speakers

    def __iter__(self) -> Iterator[str]:
        return iter(self._speakers)

    def __len__(self) -> int:
        return len(self._speakers)

    def add(self, speaker: Speaker, overwrite: bool = False) -> None:
        if speaker.name in self._speakers and not overwrite:
            raise ValueError(f"A speaker named {speaker.name!r} exists already (pass overwrite=True to replace it)")
        self._speakers[speaker.name] = speaker

    def names(self) -> list[str]:
        return sorted(self._speakers)

    # ---------------------------------------------------------------- official spk_dict.pt
    @classmethod
    def from_official(cls, path: str | os.PathLike) -> "SpeakerBank":
        """Read an official `spk_dict.pt` safely (`weights_only=True`)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Speaker file {str(path)!r} does not exist")
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            if "global" not in str(error).lower():  # not a pickle needing code, just a broken file
                raise ValueError(f"Speaker file {str(path)!r} is not a readable spk_dict.pt: {error}") from None
            raise ValueError(
                f"Refusing to load speaker file {str(path)!r}: it needs arbitrary code execution to unpickle "
                "(only tensors, numbers and dicts are allowed)."
            ) from None
        except Exception as error:  # truncated or not a torch file at all
            raise ValueError(f"Speaker file {str(path)!r} is not a readable spk_dict.pt: {error}") from None
        if not isinstance(raw, dict) or not raw:
            raise ValueError(
                f"Speaker file {str(path)!r} must hold a non-empty dict of speakers, got {type(raw).__name__}"
            )
        speakers = {}
        for name, entry in raw.items():
            if not isinstance(entry, dict) or not {"bos_token", "cond", "ref_mel"} <= set(entry):
                raise ValueError(f"Speaker {name!r} in {str(path)!r} needs 'bos_token', 'cond' and 'ref_mel' entries")
            bos = entry["bos_token"]
            bos = int(bos.item()) if torch.is_tensor(bos) else bos
            speakers[str(name)] = Speaker(str(name), bos, entry["cond"], entry["ref_mel"])
        return cls(speakers)

    # ---------------------------------------------------------------- our format
    def save(self, directory: str | os.PathLike) -> None:
        """Write `speakers.safetensors` + `speakers.json` into `directory`."""
        with staged_save(directory, "speakers") as stage:  # both files or neither: never half a speaker set
            self._write(Path(stage))

    def _write(self, directory: Path) -> None:
        tensors, index = {}, {"format": FORMAT, "speakers": {}}
        for name, speaker in self._speakers.items():
            tensors[f"{name}.cond"] = (
                speaker.speaker_embedding.contiguous().clone()
            )  # speakers may share a base tensor
            tensors[f"{name}.ref_mel"] = speaker.reference_mel.contiguous().clone()
            index["speakers"][name] = {"bos_token_id": speaker.bos_token_id}
        save_file(tensors, directory / SPEAKERS_WEIGHTS, metadata={"format": "pt"})
        (directory / SPEAKERS_INDEX).write_text(json.dumps(index, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "SpeakerBank":
        """Read our format from `directory`."""
        directory = Path(directory)
        check_complete(directory)
        index_path, weights_path = directory / SPEAKERS_INDEX, directory / SPEAKERS_WEIGHTS
        if not index_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"{directory} needs both {SPEAKERS_INDEX} and {SPEAKERS_WEIGHTS}")
        try:
            index = json.loads(index_path.read_text())
            entries = index["speakers"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{index_path} is not a valid speaker index: {error}") from None
        if index.get("format") != FORMAT:
            raise ValueError(f"{index_path} has format {index.get('format')!r}, expected {FORMAT!r}")
        tensors = load_file(weights_path)
        speakers = {}
        for name, entry in entries.items():
            missing = [k for k in (f"{name}.cond", f"{name}.ref_mel") if k not in tensors]
            if missing:
                raise ValueError(f"{weights_path} lacks {missing} for speaker {name!r}")
            speakers[name] = Speaker(
                name, int(entry["bos_token_id"]), tensors[f"{name}.cond"], tensors[f"{name}.ref_mel"]
            )
        return cls(speakers)

    # ---------------------------------------------------------------- Hub (ModelHubMixin)
    def _save_pretrained(self, save_directory: Path) -> None:
        self._write(Path(save_directory))  # the hub mixin's own fresh folder: nothing to stage, no save manifest

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token, **_):
        if Path(model_id).is_dir():
            return cls.load(model_id)
        folder = snapshot_download(
            model_id,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
            allow_patterns=[SPEAKERS_INDEX, SPEAKERS_WEIGHTS],
        )
        return cls.load(folder)

    def generate_model_card(self, repo_id: str = "YOUR_USER/speakers", results=None, **details):
        """The card of this speaker set as published at `repo_id` (template `model_cards/speakers.md.jinja`)."""
        from ..hub.cards import render_card

        rows = [
            {"name": n, "bos_token_id": self[n].bos_token_id, "seconds": f"{self[n].reference_mel.shape[1] / 100:.2f}"}
            for n in self.names()
        ]
        return render_card("speakers", repo_id, results=results, speakers=self.names(), speaker_rows=rows, **details)


__all__ = ["Speaker", "SpeakerBank"]
