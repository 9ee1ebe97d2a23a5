"""The full Qwen2.5-Omni: Thinker (text) → Talker (speech codes) → Token2Wav pipeline (24 kHz waveform)."""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import PreTrainedConfig
from transformers.utils import cached_file, logging

from ..common.modeling_utils import OmniPreTrainedModel
from ..common.remote_code import auto_map_entry, write_code_set
from ..talker.modeling_talker import OmniTalkerForConditionalGeneration
from ..talker.talker_inputs import build_talker_inputs
from ..thinker.modeling_thinker import OmniThinkerForConditionalGeneration
from ..token2wav.pipeline_token2wav import OmniToken2WavPipeline
from ..token2wav.streaming import StreamingWindow
from ..voices.adapters import VoiceAdapters
from ..voices.speakers import OFFICIAL_SPEAKERS, SPEAKERS_INDEX, SpeakerBank
from .configuration_omni import OmniConfig
from .events import AudioChunk, StreamStats, TextDelta
from .generation_omni import stream_reply
from .pipeline_compat import pipeline_generate_arguments

logger = logging.get_logger(__name__)

TOKEN2WAV_FOLDER = "token2wav"
_HUB_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "force_download")
# Inputs that describe the prompt's media: the Thinker encodes them, the Talker needs them for TMRoPE ids.
_MEDIA_LAYOUT = (
    "image_grid_thw",
    "video_grid_thw",
    "video_second_per_grid",
    "use_audio_in_video",
    "feature_attention_mask",
)


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


class OmniForConditionalGeneration(OmniPreTrainedModel):
    """Thinker + Talker (official parameter names, `thinker.*` / `talker.*`), the token2wav Diffusers pipeline and
    the speakers. Loads official Qwen2.5-Omni checkpoints (with `spk_dict.pt`) and our own layout
    (`token2wav/` pipeline folder, `speakers.safetensors` + `speakers.json`), written by `omni-hf convert`.

    Example:

    ```python
    >>> model = OmniForConditionalGeneration.from_pretrained("Qwen/Qwen2.5-Omni-7B")
    >>> inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    >>> text_ids, waveform = model.generate(**inputs, speaker="Chelsie")  # waveform: (samples,) at 24 kHz
    ```"""

    config: OmniConfig
    config_class = OmniConfig
    base_model_prefix = "omni"
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
        self.token2wav: OmniToken2WavPipeline | None = None
        self.speakers = SpeakerBank()
        self.voices = VoiceAdapters(self)  # LoRA voice adapters on the Talker (not a submodule)
        self.post_init()

    @property
    def has_talker(self) -> bool:
        return self.talker is not None and self.token2wav is not None

    def to(self, *args, **kwargs):
        """Move the model; the token2wav pipeline follows the device but stays float32 (as the reference requires)."""
        model = super().to(*args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None and self.token2wav is not None:
            self.token2wav.to(device)
        return model

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

    # ---------------------------------------------------------------- loading and saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        raw, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
        official = raw.get("model_type") == "qwen2_5_omni"
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if model.config.enable_audio_output:
            model._load_speech_side(pretrained_model_name_or_path, official, hub_kwargs)
            model.token2wav.to(model.talker.device)  # follows device_map / .to(); stays float32
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
        """Our layout: config + thinker/talker safetensors, `token2wav/` pipeline folder, speakers."""
        if self.voices.names:
            raise ValueError(
                f"Voice adapters {self.voices.names} are loaded: save them with model.voices.save(name, dir), then "
                "model.voices.unload() (or model.voices.merge(name) to bake one in) before saving the model"
            )
        from .causal_lm_omni import OmniThinkerForCausalLM

        classes = [type(self), type(self.config), OmniThinkerForCausalLM]
        self.config.auto_map = {"AutoConfig": auto_map_entry(type(self.config))}
        self.config.auto_map |= {name: auto_map_entry(type(self)) for name in self.auto_classes}
        self.config.auto_map |= {name: auto_map_entry(OmniThinkerForCausalLM) for name in self.thinker_auto_classes}
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_code_set(classes, save_directory)
        if self.token2wav is not None:
            self.token2wav.save_pretrained(os.path.join(save_directory, TOKEN2WAV_FOLDER))
        if len(self.speakers):
            self.speakers.save(save_directory)

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    @pipeline_generate_arguments
    def generate(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        speaker: str = "Chelsie",
        return_audio: bool | None = None,
        thinker_max_new_tokens: int = 1024,
        talker_max_new_tokens: int = 4096,
        generator: torch.Generator | None = None,
        voice: str | list[str | None] | None = None,
        **kwargs,
    ):
        """Answer in text and, with `return_audio`, speech.

        Args:
            input_ids / attention_mask / media inputs: from `OmniProcessor` (batch of one or more prompts).
            speaker: a name in `self.speakers`.
            return_audio: default: whether the Talker is enabled. False: the Thinker alone (`generate` of text).
            thinker_* / talker_* / token2wav_*: keyword arguments for the Thinker's and Talker's `generate` and the
                token2wav pipeline (e.g. `talker_do_sample=False`, `token2wav_num_inference_steps=10`).
            generator: noise of the token2wav ODE.
            voice: a loaded voice adapter (`model.voices`: the Talker's, and the DiT's when the voice has one), or one
                per prompt; None: the base model.

        Returns:
            the Thinker's `sequences` `(batch, prompt + reply)`; with audio, `(sequences, waveform)` where waveform
            is a `(samples,)` float32 tensor at 24 kHz for one prompt, or a list of them for a batch.
        """
        speaker_voice = self._voice(speaker, return_audio)
        thinker_kwargs, talker_kwargs, token2wav_kwargs = _split_kwargs(
            kwargs, thinker_max_new_tokens, talker_max_new_tokens
        )
        if speaker_voice is None:
            return self.thinker.generate(input_ids=input_ids, attention_mask=attention_mask, **thinker_kwargs)

        with self._thinker_track() as track:
            sequences = self.thinker.generate(input_ids=input_ids, attention_mask=attention_mask, **thinker_kwargs)
        if not torch.is_tensor(sequences):  # the caller asked for return_dict_in_generate
            sequences = sequences.sequences
        eos = thinker_kwargs.get("eos_token_id", self.thinker.generation_config.eos_token_id)
        with self.voices.use(voice):
            codes = self._speak(input_ids, attention_mask, sequences, track, speaker_voice, eos, kwargs, talker_kwargs)
        waveforms = []
        for i, row in enumerate(codes):
            with self.voices.use_dit(voice[i] if isinstance(voice, list) else voice):
                waveforms.append(self.codes_to_waveform(row, speaker_voice, generator=generator, **token2wav_kwargs))
        return sequences, (waveforms[0] if len(waveforms) == 1 else waveforms)

    def stream(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        speaker: str = "Chelsie",
        return_audio: bool | None = None,
        tokenizer=None,
        window: StreamingWindow | None = None,
        thinker_max_new_tokens: int = 1024,
        talker_max_new_tokens: int = 4096,
        generator: torch.Generator | None = None,
        background_token2wav: bool | None = None,
        voice: str | None = None,
        **kwargs,
    ) -> Iterator[TextDelta | AudioChunk | StreamStats]:
        """Answer one prompt in text and speech *while* generating: an iterator of events.

        The Thinker and the Talker advance together (the Talker takes step `t` as soon as the Thinker's entry `t`
        exists) and token2wav decodes chunk by chunk, so audio starts long before the reply is finished. Greedy
        streaming gives the same text and codes as greedy `generate`.

        Args:
            input_ids / attention_mask / media inputs: from `OmniProcessor`, one prompt (batch of 1).
            speaker: a name in `self.speakers`; return_audio: as in `generate` (False: text only).
            tokenizer: a tokenizer or processor, to decode text increments (otherwise `TextDelta.text` is "").
            window: the token2wav chunking ([`StreamingWindow`]; default chunks of 2, 4, 8, 16, then 32 DiT blocks).
            thinker_* / talker_* / token2wav_*: as in `generate`; `generator`: the token2wav noise.
            voice: a loaded voice adapter (`model.voices`, Talker and DiT parts); None: the base model.
            background_token2wav: run the DiT and vocoder on a worker thread, overlapping the decoders (default: on
                CUDA only; on a few CPU cores the stages compete for the same cores and it was measured slower).

        Yields:
            [`TextDelta`] per Thinker token, [`AudioChunk`] (float32 PCM at 24 kHz with its start time) whenever a
            chunk is final, and a last [`StreamStats`] (time to first text and audio, RTF per stage, counts).

        Example:

        ```python
        >>> for event in model.stream(**inputs, speaker="Chelsie", tokenizer=processor):
        ...     if isinstance(event, TextDelta):
        ...         print(event.text, end="", flush=True)
        ...     elif isinstance(event, AudioChunk):
        ...         player.write(event.audio)
        ```
        """
        speaker_voice = self._voice(speaker, return_audio)
        thinker_kwargs, talker_kwargs, token2wav_kwargs = _split_kwargs(
            kwargs, thinker_max_new_tokens, talker_max_new_tokens
        )
        layout = {k: kwargs[k] for k in _MEDIA_LAYOUT if kwargs.get(k) is not None}
        return stream_reply(
            self,
            input_ids,
            attention_mask,
            {},
            thinker_kwargs,
            voice=speaker_voice,
            talker_kwargs=talker_kwargs,
            token2wav_kwargs=token2wav_kwargs,
            media_layout=layout,
            tokenizer=tokenizer,
            window=window,
            generator=generator,
            background_token2wav=self.thinker.device.type == "cuda"
            if background_token2wav is None
            else background_token2wav,
            talker_context=lambda: self.voices.use(voice),
            dit_context=lambda: self.voices.use_dit(voice),
        )

    def _voice(self, speaker: str, return_audio: bool | None):
        """The speaker to answer with, or None for a text-only reply."""
        return_audio = self.has_talker if return_audio is None else return_audio
        if return_audio and not self.has_talker:
            raise ValueError(
                "This model has no talker/token2wav loaded: call enable_talker() or pass return_audio=False"
            )
        return self.speakers[speaker] if return_audio else None

    @contextmanager
    def _thinker_track(self):
        """Record, for every Thinker forward, its input embeddings and final hidden states (what the Talker reads),
        instead of keeping every layer's hidden states as `output_hidden_states=True` would."""
        track: list[tuple[torch.Tensor, torch.Tensor]] = []

        def record(module, args, kwargs, output):
            track.append((kwargs["inputs_embeds"], output.last_hidden_state))

        handle = self.thinker.model.register_forward_hook(record, with_kwargs=True)
        try:
            yield track
        finally:
            handle.remove()

    def _speak(
        self, input_ids, attention_mask, sequences, track, voice, eos, media, talker_kwargs
    ) -> list[torch.Tensor]:
        """The Talker's speech codes for each row, cut at its first end token."""
        batch = input_ids.shape[0]
        if sequences.shape[1] - input_ids.shape[1] < 2:
            return [input_ids.new_zeros(0)] * batch
        inputs = build_talker_inputs(
            self.thinker, self.talker.config, input_ids, sequences, track, voice.bos_token_id, attention_mask, eos
        )
        layout = {k: media[k] for k in _MEDIA_LAYOUT if media.get(k) is not None}
        generated = self.talker.generate(**inputs, **layout, **talker_kwargs)[:, inputs["input_ids"].shape[1] :]
        ends = torch.isin(generated, torch.tensor(self.talker.config.codec_eos_token_ids, device=generated.device))
        steps = torch.arange(generated.shape[1], device=generated.device)
        lengths = torch.where(ends, steps, generated.shape[1]).min(-1).values
        return [generated[i, : int(lengths[i])] for i in range(batch)]

    def codes_to_waveform(self, codes: torch.Tensor, voice, generator=None, **token2wav_kwargs) -> torch.Tensor:
        """`(codes,)` speech codes → `(samples,)` float32 waveform at 24 kHz (empty for no codes)."""
        if codes.numel() == 0:
            return torch.zeros(0)
        output = self.token2wav(
            codes.unsqueeze(0),
            reference_mel=voice.ref_mel,
            speaker_embedding=voice.cond,
            generator=generator,
            **token2wav_kwargs,
        )
        return output.audios[0]


def _split_kwargs(kwargs: dict, thinker_max_new_tokens: int, talker_max_new_tokens: int) -> tuple[dict, dict, dict]:
    """Route `thinker_*` / `talker_*` / `token2wav_*` keyword arguments (unprefixed ones go to the Thinker)."""
    thinker = {"max_new_tokens": thinker_max_new_tokens}
    talker = {"max_new_tokens": talker_max_new_tokens}
    token2wav = {}
    for key, value in kwargs.items():
        for prefix, target in (("thinker_", thinker), ("talker_", talker), ("token2wav_", token2wav)):
            if key.startswith(prefix):
                target[key[len(prefix) :]] = value
                break
        else:
            thinker[key] = value
    return thinker, talker, token2wav


__all__ = ["OmniForConditionalGeneration"]
