"""LoRA voice adapters on the Talker (PEFT): trained per voice, saved and loaded by name, switched per request.

The Talker keeps its own class and weights; PEFT injects the LoRA layers into it, and a `PeftModel` kept beside it
(not registered as a submodule) switches, disables, merges and saves adapters. `voice=None` always means the base
Talker (adapters disabled), so loading voices never changes what existing calls produce.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from transformers.utils import logging

from ..common.staged_save import check_complete, staged_save

if TYPE_CHECKING:  # peft is an optional dependency (extra "train"): imported where adapters are made
    from peft import LoraConfig, PeftModel

logger = logging.get_logger(__name__)

VOICE_FILE = "voice.json"
TALKER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BASE = "__base__"  # PEFT's name for "no adapter" in per-row adapter batches
DIT_FOLDER = "dit"  # the DiT part of a voice, inside its adapter folder
INCOMING = "__incoming__"  # a replacement voice while it loads (load(..., overwrite=True))


def voice_lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules=None) -> LoraConfig:
    """LoRA on the Talker's attention and MLP projections (the codec head and embeddings stay frozen)."""
    return _peft().LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules or TALKER_TARGETS
    )


def talker_only_targets(target_modules) -> str:
    """The saved adapter's `target_modules` as a regex of the Talker's own module names
    (`model.layers.N.<...>.q_proj`, ...): PEFT matches it with `re.fullmatch`, so on the Talker it picks exactly
    the modules the list did (all of them lie in its decoder layers), while on the full model (`talker.model...`,
    `thinker.model...`) it matches nothing and `PeftModel.from_pretrained(full_model, adapter)` raises PEFT's
    "Target modules ... not found" instead of injecting layers everywhere and loading none of the tensors."""
    if isinstance(target_modules, str):
        return target_modules  # a regex already
    names = "|".join(re.escape(name) for name in sorted(target_modules or TALKER_TARGETS))
    return rf"^model\.layers\.\d+\.(?:[\w.]+\.)?(?:{names})$"


def target_names(target_modules) -> list[str]:
    """The module names an adapter targets (from a list, or from a `talker_only_targets` regex)."""
    if isinstance(target_modules, str):
        found = re.search(r"\(\?:([\w|]+)\)\$$", target_modules)
        return sorted(found.group(1).split("|")) if found else [target_modules]
    return sorted(target_modules or TALKER_TARGETS)


def talker_fingerprint(talker) -> dict:
    """What an adapter must match: the Talker's shape-defining settings."""
    c = talker.config
    return {
        key: getattr(c, key)
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")
    } | {"embedding_size": c.embedding_size, "intermediate_size": c.intermediate_size}


def dit_fingerprint(dit) -> dict:
    """What a DiT adapter must match: the DiT's shape-defining settings."""
    return {key: dit.config[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim")}


class VoiceAdapters:
    """The voice adapters of one `OmniForConditionalGeneration` (reach it as `model.voice_adapters`)."""

    def __init__(self, model):
        self.model = model
        self.peft: PeftModel | None = None

    @property
    def names(self) -> list[str]:
        return [] if self.peft is None else sorted(self.peft.peft_config)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def add(self, name: str, config: LoraConfig | None = None) -> None:
        """A new, untrained adapter (for training)."""
        self._check_name(name)
        config = config or voice_lora_config()
        if self.peft is None:
            self.peft = _peft().PeftModel(self.model.talker, config, adapter_name=name)
        else:
            self.peft.add_adapter(name, config)
        self.peft.set_adapter(name)

    def load(self, path: str | os.PathLike, name: str | None = None, overwrite: bool = False) -> str:
        """Load an adapter saved by `save` (a local folder, or a Hub repo id with `huggingface_hub`) under `name`
        (default: the name it was saved with). A loaded voice of that name is refused unless `overwrite=True`, which
        replaces it only once the new adapter has loaded."""
        local = Path(path)
        if not local.is_dir():
            from huggingface_hub import snapshot_download

            local = Path(snapshot_download(str(path)))
        check_complete(local)
        meta_path = local / VOICE_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        name = name or meta.get("voice") or local.name
        if overwrite and name in self.names:
            self._load(local, INCOMING, meta, path)  # fails, keeping the old voice, if it does not fit
            self.remove(INCOMING)
            self.remove(name)
        self._check_name(name)
        return self._load(local, name, meta, path)

    def _load(self, local: Path, name: str, meta: dict, path) -> str:
        expected = meta.get("talker")
        if expected is not None and expected != talker_fingerprint(self.model.talker):
            raise ValueError(
                f"Voice adapter {str(path)!r} was made for another base model (talker {expected}), not this one "
                f"({talker_fingerprint(self.model.talker)})"
            )
        try:
            if self.peft is None:
                self.peft = _peft().PeftModel.from_pretrained(self.model.talker, local, adapter_name=name)
            else:
                self.peft.load_adapter(local, adapter_name=name)
        except RuntimeError as error:  # tensor shapes that do not fit this Talker
            if INCOMING in self.names:
                self.remove(INCOMING)
            raise ValueError(f"Voice adapter {str(path)!r} does not fit this model's Talker: {error}") from None
        self.peft.eval()
        if (local / DIT_FOLDER).is_dir():
            self._load_dit(local / DIT_FOLDER, name, meta, path)
        return name

    def _load_dit(self, folder: Path, name: str, meta: dict, path) -> None:
        dit = self._dit()
        problem = None
        if dit is None:
            problem = "this model has no token2wav DiT"
        elif meta.get("dit") is not None and meta["dit"] != dit_fingerprint(dit):
            problem = f"it was made for another DiT ({meta['dit']}, not {dit_fingerprint(dit)})"
        else:
            try:
                dit.load_lora_adapter(folder, adapter_name=name, prefix=None, use_safetensors=True)
                dit.disable_adapters()  # outside `use_dit` the DiT is the base one
            except (RuntimeError, ValueError) as error:
                problem = str(error)
        if problem is not None:
            self.remove(name)  # the Talker part loaded already: take it back
            raise ValueError(f"Voice adapter {str(path)!r} has a DiT part that does not fit: {problem}")

    def save(self, name: str, directory: str | os.PathLike, voice_label: str | None = None) -> Path:
        """Write adapter `name` (PEFT files + its card + `voice.json`) into `directory`; `voice.json` names the
        voice `voice_label` (default: `name`)."""
        self._require(name)
        directory = Path(directory)
        with staged_save(directory, "voice") as stage:  # staged: an interrupted save leaves the old adapter
            self.peft.save_pretrained(stage, selected_adapters=[name])
            sub = name if (stage / name).is_dir() else ""
            saved = stage / sub
            config_file = saved / "adapter_config.json"
            adapter_config = json.loads(config_file.read_text())
            adapter_config["target_modules"] = talker_only_targets(adapter_config.get("target_modules"))
            config_file.write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
            meta = {
                "voice": voice_label or name,
                "talker": talker_fingerprint(self.model.talker),
                "library": "omni_hf",
            }
            if name in self.dit_names:
                dit = self._dit()
                dit.save_lora_adapter(saved / DIT_FOLDER, adapter_name=name)
                meta["dit"] = dit_fingerprint(dit)
            (saved / VOICE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            self._write_card(name, saved)
        return directory / sub

    def _write_card(self, name: str, directory: Path) -> None:
        self.card(name, f"YOUR_USER/{name}").save(directory / "README.md")

    def card(self, name: str, repo_id: str, results=None, base_model: str | None = None, **details):
        """The model card of adapter `name` as published at `repo_id` (`omni_hf.hub.render_card`, template
        `model_cards/voice_adapter.md.jinja`): rank, targets, trainable parameters, the Talker it fits."""
        from ..hub.cards import render_card

        self._require(name)
        config = self.peft.peft_config[name]
        base = base_model or getattr(self.model.config, "_name_or_path", "") or None
        lora = sum(p.numel() for n, p in self.peft.named_parameters() if f".{name}." in n)
        speakers = self.model.speakers.names()
        return render_card(
            "voice",
            repo_id,
            results=results,
            base_model=base,
            voice=name,
            rank=config.r,
            target_modules=target_names(config.target_modules),
            adapter_parameters=f"{lora:,}",
            talker_shape=", ".join(f"{k} {v}" for k, v in talker_fingerprint(self.model.talker).items()),
            base_model_id=base or "BASE_MODEL",
            speaker=details.pop("speaker", speakers[0] if speakers else "Chelsie"),
            dit_part=name in self.dit_names,
            **details,
        )

    def merge(self, name: str) -> None:
        """Fold adapter `name` into the Talker's weights and drop every adapter (the Talker is plain again)."""
        self._require(name)
        self.peft.set_adapter(name)
        self.model.talker = self.peft.merge_and_unload()
        self.peft = None
        dit = self._dit()
        if name in self.dit_names:
            dit.enable_adapters()
            dit.fuse_lora(adapter_names=[name])
        if self.dit_names:
            dit.unload_lora()

    def remove(self, name: str) -> None:
        """Drop adapter `name` (the last one leaves the Talker plain, as `unload`)."""
        self._require(name)
        if self.names == [name]:
            self.unload()
            return
        if self.peft.active_adapter == name:
            self.peft.set_adapter(next(n for n in self.names if n != name))
        self.peft.delete_adapter(name)
        self._remove_dit(name)

    def _remove_dit(self, name: str) -> None:
        if name in self.dit_names:
            dit = self._dit()
            if self.dit_names == [name]:
                dit.unload_lora()
            else:
                dit.delete_adapters(name)

    def unload(self) -> None:
        """Remove every adapter; the Talker returns to its base weights."""
        if self.peft is not None:
            self.model.talker = self.peft.unload()
            self.peft = None
        if self.dit_names:
            self._dit().unload_lora()

    def _dit(self):
        return None if self.model.token2wav is None else self.model.token2wav.dit

    @property
    def dit_names(self) -> list[str]:
        """Voices that also carry a DiT adapter (token2wav's timbre)."""
        dit = self._dit()
        return sorted(getattr(dit, "peft_config", None) or {}) if dit is not None else []

    @contextmanager
    def use_dit(self, voice: str | None):
        """Run token2wav's DiT with `voice`'s DiT adapter; the base DiT for None or a voice without one."""
        if voice is not None and not isinstance(voice, str):
            raise ValueError(f"use_dit takes one voice name or None, got {voice!r}")
        if voice is not None:
            self._require(voice)
        if voice not in self.dit_names:
            yield  # adapters stay disabled: the base DiT
            return
        dit = self._dit()
        dit.enable_adapters()
        dit.set_adapters([voice], [1.0])
        try:
            yield
        finally:
            dit.disable_adapters()

    @contextmanager
    def use(self, voice: str | list[str | None] | None):
        """Run the Talker with `voice` (a name; a list gives one voice per batch row; None = the base Talker)."""
        if self.peft is None:
            if voice is not None and (isinstance(voice, str) or any(v is not None for v in voice)):
                raise ValueError(f"No voice adapters are loaded; got voice={voice!r}")
            yield
            return
        if voice is None:
            with self.peft.disable_adapter():
                yield
            return
        if isinstance(voice, str):
            self._require(voice)
            previous = self.peft.active_adapter
            self.peft.set_adapter(voice)
            try:
                yield
            finally:
                self.peft.set_adapter(previous)
            return
        names = [BASE if v is None else v for v in voice]
        for v in names:
            if v != BASE:
                self._require(v)
        # PeftModel's own generate does this for causal LMs; our Talker keeps its own generate.
        with self.peft._enable_peft_forward_hooks(adapter_names=names):
            yield

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or name in (BASE, INCOMING) or "/" in name or "." in name:
            raise ValueError(f"Invalid voice name {name!r}")
        if name in self.names:
            raise ValueError(f"A voice adapter named {name!r} is loaded already (pass overwrite=True to replace it)")

    def _require(self, name: str) -> None:
        if name not in self.names:
            known = ", ".join(self.names) or "none loaded"
            raise ValueError(f"Unknown voice {name!r}; loaded voices: {known}")


def _peft():
    try:
        import peft
    except ImportError:
        raise ImportError("Voice adapters need PEFT: pip install 'omni-hf[train]'") from None
    return peft


__all__ = [
    "VoiceAdapters",
    "dit_fingerprint",
    "talker_fingerprint",
    "talker_only_targets",
    "target_names",
    "voice_lora_config",
]
