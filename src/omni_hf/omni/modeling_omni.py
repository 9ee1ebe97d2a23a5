"""The full Qwen2.5-Omni: Thinker (text) → Talker (speech codes) → Token2Wav pipeline (24 kHz waveform)."""

import json
import os
import warnings
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open
from torch import nn
from transformers import GenerationConfig, PreTrainedConfig
from transformers.utils import cached_file, logging

from ..common.modeling_utils import OmniPreTrainedModel
from ..common.remote_code import auto_map_entry, write_code_set
from ..common.staged_save import check_complete_if_local
from ..talker.modeling_talker import OmniTalkerForConditionalGeneration
from ..thinker.modeling_thinker import OmniThinkerForConditionalGeneration
from ..token2wav.code_to_wave import is_code_to_wave
from ..token2wav.pipeline_token2wav import OmniToken2WavPipeline
from ..voices.adapters import VoiceAdapters
from ..voices.speakers import OFFICIAL_SPEAKERS, SPEAKERS_INDEX, SpeakerBank
from .configuration_omni import OmniConfig
from .generation_omni import OmniGenerationMixin

logger = logging.get_logger(__name__)

TOKEN2WAV_FOLDER = "token2wav"
_HUB_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "force_download")


def _checkpoint_tensors(path, prefix: str, hub_kwargs: dict) -> dict[str, torch.Tensor]:
    """Tensors whose names start with `prefix` from a (sharded) safetensors checkpoint, local or on the Hub."""
    index = cached_file(
        path, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs
    )
    if index is not None:
        weight_map = json.loads(Path(index).read_text())["weight_map"]
        shards = sorted({shard for name, shard in weight_map.items() if name.startswith(prefix)})
    else:
        shards = ["model.safetensors"]
    tensors = {}
    for shard in shards:
        with safe_open(cached_file(path, shard, **hub_kwargs), framework="pt") as handle:
            for name in handle.keys():
                if name.startswith(prefix):
                    tensors[name] = handle.get_tensor(name)
    return tensors


class Token2WavModule(nn.Module):
    """token2wav as a registered part of the full model.

    Its DiT and vocoder are submodules, so `.to()`, `.cuda()`, `num_parameters()`, `state_dict()` (`token2wav.dit.*`,
    `token2wav.vocoder.*`), device maps and offloading see them; every pipeline attribute (`__call__`, `stream`,
    `save_pretrained`, `scheduler`, `check_inputs`, ...) is the wrapped [`OmniToken2WavPipeline`]'s, which shares the
    same modules.
    """

    def __init__(self, pipeline: OmniToken2WavPipeline):
        super().__init__()
        self.dit = pipeline.dit
        self.vocoder = pipeline.vocoder
        self.__dict__["pipeline"] = pipeline  # a DiffusionPipeline, not an nn.Module: kept out of the module tree

    def forward(self, *args, **kwargs):
        return self.pipeline(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            pipeline = self.__dict__.get("pipeline")
            if pipeline is None:  # half-built (copy, unpickling)
                raise
            return getattr(pipeline, name)


class OmniForConditionalGeneration(OmniGenerationMixin, OmniPreTrainedModel):
    """Thinker + Talker (official parameter names, `thinker.*` / `talker.*`), token2wav (a Diffusers pipeline,
    registered as the `token2wav` submodule) and the speakers. Loads official Qwen2.5-Omni checkpoints (with
    `spk_dict.pt`) and our own layout (`token2wav/` pipeline folder, `speakers.safetensors` + `speakers.json`), written
    by `omni-hf convert`. Generation (`generate`, `stream`) lives in [`OmniGenerationMixin`].

    token2wav stays float32 when the model is cast (`model.to(torch.bfloat16)` moves it, without casting it; cast it
    explicitly with `model.token2wav.to(dtype)`), and keeps its own train/eval mode (`model.token2wav.train()`).

    Example:

    ```python
    >>> model = OmniForConditionalGeneration.from_pretrained("Qwen/Qwen2.5-Omni-7B")
    >>> inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    >>> text_ids, waveform = model.generate(**inputs, speaker="Chelsie")  # waveform: (samples,) at 24 kHz
    ```"""

    config: OmniConfig
    config_class = OmniConfig
    base_model_prefix = "omni"
    main_input_name = "input_ids"
    _keys_to_ignore_on_load_unexpected = [r"^token2wav\."]
    _no_split_modules = ["WhisperEncoderLayer", "OmniVisionBlock", "Qwen2DecoderLayer"]
    # `auto_map` of a saved folder (trust_remote_code): the full model for what transformers maps `qwen2_5_omni` to,
    # the Thinker of the folder (`omni_hf.omni.causal_lm_omni`) for the text-generating Auto classes.
    auto_classes = ("AutoModel", "AutoModelForMultimodalLM", "AutoModelForTextToWaveform")
    thinker_auto_classes = ("AutoModelForCausalLM", "AutoModelForImageTextToText")
    input_modalities = ("image", "video", "audio", "text")
    output_modalities = ("text", "audio")

    @classmethod
    def can_generate(cls) -> bool:
        """`generate` is the model's own (not `GenerationMixin`'s); pipelines call it."""
        return True

    def __init__(self, config: OmniConfig):
        super().__init__(config)
        self.thinker = OmniThinkerForConditionalGeneration._from_config(config.thinker_config)
        self.talker = (
            OmniTalkerForConditionalGeneration._from_config(config.talker_config)
            if config.enable_audio_output
            else None
        )
        self.add_module("token2wav", None)  # a Token2WavModule once loaded (from_pretrained / enable_talker)
        self.speakers = SpeakerBank()
        self.voice_adapters = VoiceAdapters(self)  # LoRA voice adapters on the Talker (not a submodule)
        self.post_init()

    @property
    def generation_config(self) -> GenerationConfig | None:
        """The Thinker's generation config: `generate`'s unprefixed kwargs and text defaults (`<|im_end|>` ends a
        reply); the Talker keeps its own (`model.talker.generation_config`, the official sampling defaults)."""
        thinker = self._modules.get("thinker")
        return thinker.generation_config if thinker is not None else self.__dict__.get("_initial_generation_config")

    @generation_config.setter
    def generation_config(self, value: GenerationConfig | None) -> None:
        thinker = self._modules.get("thinker")
        if thinker is None:  # PreTrainedModel.__init__ sets one before the parts exist
            self.__dict__["_initial_generation_config"] = value
        elif value is not None:
            thinker.generation_config = value

    @property
    def voices(self) -> VoiceAdapters:
        """Deprecated name of `voice_adapters` (removed in omni_hf 0.3)."""
        warnings.warn(
            "`model.voices` is deprecated and will be removed in omni_hf 0.3: use `model.voice_adapters`",
            FutureWarning,
            stacklevel=2,
        )
        return self.voice_adapters

    @property
    def has_talker(self) -> bool:
        return self.talker is not None and self.token2wav is not None

    def __setattr__(self, name, value):
        """`model.token2wav = stage` swaps the code-to-wave stage (`omni_hf.token2wav.code_to_wave`): the DiT
        pipeline is wrapped as a submodule; another stage must be an `nn.Module` with the interface's methods."""
        if name == "token2wav" and isinstance(value, DiffusionPipeline) and is_code_to_wave(value):
            value = Token2WavModule(value)  # also a pipeline loaded through its folder's code (trust_remote_code)
        elif name == "token2wav" and value is not None and not is_code_to_wave(value):
            raise TypeError(
                f"model.token2wav must be a code-to-wave stage (speaker_conditioning, open_stream, decode; see "
                f"omni_hf.token2wav.code_to_wave), got {type(value).__name__}"
            )
        super().__setattr__(name, value)

    def _apply(self, fn, recurse=True):
        """`.to()`, `.cuda()`, `.half()`, ...: token2wav follows the device but keeps its dtype (float32)."""
        token2wav = self._modules.pop("token2wav", None)
        try:
            super()._apply(fn, recurse)
        finally:
            self._modules["token2wav"] = token2wav
        tensor = next(token2wav.parameters(), next(token2wav.buffers(), None)) if token2wav is not None else None
        if tensor is not None and recurse:  # any code-to-wave stage that is a module follows the device
            probe = fn(torch.zeros(0, device=tensor.device))
            token2wav.to(probe.device)
        return self

    def train(self, mode: bool = True):
        """Train/eval mode of the Thinker and Talker; token2wav keeps its own (set it with `model.token2wav.train()`)."""
        token2wav = self._modules.pop("token2wav", None)
        try:
            return super().train(mode)
        finally:
            self._modules["token2wav"] = token2wav

    def enable_talker(self) -> None:
        """(Re)build the Talker and a token2wav pipeline from the config (random weights until loaded)."""
        if self.talker is None:
            self.talker = OmniTalkerForConditionalGeneration._from_config(self.config.talker_config).to(self.device)
        if self.token2wav is None:
            self.token2wav = OmniToken2WavPipeline.from_official(self.config.token2wav_config or {}, {})
        self.config.enable_audio_output = True

    def disable_talker(self) -> None:
        """Drop the Talker and token2wav to free memory for text-only use."""
        self.talker = None
        self.token2wav = None
        self.config.enable_audio_output = False

    def add_speaker(
        self,
        name: str,
        reference_audio,
        sampling_rate: int | None = None,
        base: str = "Chelsie",
        overwrite: bool = False,
        **kwargs,
    ):
        """Make a new voice from a reference clip (path or array), usable as `speaker=name` in `generate` and
        `stream` and saved with the model. See `omni_hf.voices.build_speaker` for the clip rule and `kwargs`
        (`speaker_encoder`, `bos_token_id`, `max_seconds`)."""
        from ..voices.speaker_builder import build_speaker

        if name in self.speakers and not overwrite:
            raise ValueError(f"A speaker named {name!r} exists already (pass overwrite=True to replace it)")
        speaker = build_speaker(reference_audio, name, self.speakers[base], sampling_rate, **kwargs)
        self.speakers.add(speaker, overwrite=overwrite)
        return speaker

    # ---------------------------------------------------------------- PEFT adapters
    def load_adapter(self, peft_model_id=None, adapter_name: str | None = None, **kwargs):
        """transformers' `load_adapter`, sent to the part the adapter was trained on (never a silent no-op).

        The adapter's tensor names and shapes are matched first (`omni_hf.voices.adapter_routing`):
        - trained on this full model (`thinker.*` / `talker.*` names): transformers' own `load_adapter`; switch it
          off and on with `disable_adapters()` / `enable_adapters()`;
        - trained on the Talker (a voice adapter, e.g. from `recipes/voice_lora.py` or the DPO recipe): loaded into
          `model.voice_adapters` under `adapter_name` (default: its own name) and used by the replies that ask for
          it, `generate(..., voice_adapter=name)`; a warning says so;
        - trained on the Thinker: `model.thinker.load_adapter(...)`, active at once;
        - fitting none of them (or the Thinker and the Talker alike, without a `voice.json`): a ValueError naming
          the tensors that do not fit, before anything is injected.
        Returns the name the adapter was loaded under."""
        from ..voices.adapter_routing import adapter_folder, adapter_tensor_shapes, fitting_parts

        if peft_model_id is None:
            raise ValueError("load_adapter needs peft_model_id: an adapter folder or Hub repo id")
        hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
        folder = adapter_folder(peft_model_id, **hub)
        fits = {part: not wrong for part, wrong in fitting_parts(self, adapter_tensor_shapes(folder)).items()}
        if fits["model"]:
            name = adapter_name or "default"
            super().load_adapter(str(folder), adapter_name=name, **kwargs)
            return name
        is_voice = (folder / "voice.json").is_file()
        if fits.get("talker") and (is_voice or not fits["thinker"]):
            name = self.voice_adapters.load(folder, name=adapter_name)
            logger.warning(
                f"{str(peft_model_id)!r} is a Talker (voice) adapter: loaded into model.voice_adapters as {name!r}. "
                f"Replies use it when asked, generate(..., voice_adapter={name!r}); voice_adapter=None is the base voice."
            )
            return name
        if fits["thinker"] and not fits.get("talker"):
            name = adapter_name or "default"
            self.thinker.load_adapter(str(folder), adapter_name=name, **kwargs)
            return name
        if fits["thinker"]:
            raise ValueError(
                f"{str(peft_model_id)!r} fits both the Thinker and the Talker (same module names and sizes) and has "
                "no voice.json: load it where it belongs, model.thinker.load_adapter(path) or "
                "model.voice_adapters.load(path)"
            )
        misfits = fitting_parts(self, adapter_tensor_shapes(folder))
        closest = min(misfits.values(), key=len)
        raise ValueError(
            f"{str(peft_model_id)!r} fits neither this model, its Thinker nor its Talker: {len(closest)} adapter "
            f"tensor(s) have no matching module, e.g. {closest[0]}"
        )

    # ---------------------------------------------------------------- loading and saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, token2wav=None, **kwargs):
        """Load a full model (official layout or ours). `token2wav`: another code-to-wave stage instead of the
        folder's own (e.g. a few-step student from `recipes/token2wav_distill.py`): a pipeline folder or repo id,
        or a loaded stage; the speakers still come from the model's folder."""
        check_complete_if_local(pretrained_model_name_or_path)  # a missing local folder is named as such
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        raw, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
        official = raw.get("model_type") == "qwen2_5_omni"
        if token2wav is not None and not is_code_to_wave(token2wav) and not isinstance(token2wav, (str, os.PathLike)):
            raise TypeError(
                f"token2wav must be a pipeline folder, a repo id or a code-to-wave stage, got {token2wav!r}"
            )
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if model.config.enable_audio_output:
            model._load_speech_side(pretrained_model_name_or_path, official, hub_kwargs)
            if token2wav is not None:
                is_path = isinstance(token2wav, (str, os.PathLike))
                model.token2wav = OmniToken2WavPipeline.from_pretrained(token2wav) if is_path else token2wav
            model.token2wav.to(model.talker.device)  # follows device_map / .to(); stays float32
        elif token2wav is not None:
            raise ValueError("token2wav= needs the speech side: do not pass enable_audio_output=False")
        return loaded

    def _load_speech_side(self, path, official: bool, hub_kwargs: dict) -> None:
        if official:
            tensors = _checkpoint_tensors(path, "token2wav.", hub_kwargs)
            if not tensors:
                raise ValueError(f"{path} has no token2wav weights: load with enable_audio_output=False for text only")
            self.token2wav = OmniToken2WavPipeline.from_official(self.config.token2wav_config or {}, tensors)
            speakers = cached_file(path, OFFICIAL_SPEAKERS, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
            self.speakers = SpeakerBank.from_official(speakers) if speakers else SpeakerBank()
            return
        local = Path(path)
        if not local.is_dir():
            from huggingface_hub import snapshot_download

            hub = {k: v for k, v in hub_kwargs.items() if k in ("cache_dir", "revision", "token", "local_files_only")}
            local = Path(snapshot_download(str(path), allow_patterns=[f"{TOKEN2WAV_FOLDER}/*", "speakers.*"], **hub))
        if not (local / TOKEN2WAV_FOLDER / "model_index.json").is_file():
            raise ValueError(
                f"{path} has no {TOKEN2WAV_FOLDER}/ pipeline: load with enable_audio_output=False for text only"
            )
        self.token2wav = OmniToken2WavPipeline.from_pretrained(local / TOKEN2WAV_FOLDER)
        self.speakers = SpeakerBank.load(local) if (local / SPEAKERS_INDEX).is_file() else SpeakerBank()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Our layout: config + thinker/talker safetensors, `token2wav/` pipeline folder, speakers; staged as one
        artifact (`omni_hf.common.staged_save`)."""
        if self.voice_adapters.names:
            raise ValueError(
                f"Voice adapters {self.voice_adapters.names} are loaded: save them with "
                "model.voice_adapters.save(name, dir), then model.voice_adapters.unload() (or "
                "model.voice_adapters.merge(name) to bake one in) before saving the model"
            )
        return super().save_pretrained(save_directory, *args, **kwargs)

    def write_pretrained(self, save_directory, *args, **kwargs):
        from .causal_lm_omni import OmniThinkerForCausalLM

        self.config.auto_map = {"AutoConfig": auto_map_entry(type(self.config))}
        self.config.auto_map |= {name: auto_map_entry(type(self)) for name in self.auto_classes}
        self.config.auto_map |= {name: auto_map_entry(OmniThinkerForCausalLM) for name in self.thinker_auto_classes}
        if kwargs.get("state_dict") is None:  # token2wav is saved as its own pipeline folder below
            kwargs["state_dict"] = {k: v for k, v in self.state_dict().items() if not k.startswith("token2wav.")}
        super().write_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):  # the self-contained code set for trust_remote_code
            write_code_set([type(self), type(self.config), OmniThinkerForCausalLM], save_directory)
        if self.token2wav is not None:
            token2wav = self.token2wav
            if len(self.speakers) and getattr(token2wav, "default_speaker", False) is None:
                # the folder then runs on its own (`DiffusionPipeline.from_pretrained(...)(codes)`)
                name = "Chelsie" if "Chelsie" in self.speakers else self.speakers.names()[0]
                token2wav.set_default_speaker(token2wav.speaker_conditioning(self.speakers[name]))
            token2wav.save_pretrained(os.path.join(save_directory, TOKEN2WAV_FOLDER))
        if len(self.speakers):
            self.speakers.save(save_directory)


__all__ = ["OmniForConditionalGeneration", "Token2WavModule"]
