"""The Thinker: audio + vision encoders feeding a Qwen2 decoder with TMRoPE, generating text."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling, CausalLMOutputWithPast
from transformers.utils import logging

from ..common.modeling_decoder import OmniDecoderModel
from ..common.modeling_utils import OmniPreTrainedModel
from ..common.remote_code import auto_map_entry, write_code_set
from ..common.step_decoder import LeanGenerationMixin
from ..common.tmrope import TMRoPETokens, get_rope_index
from .configuration_thinker import OFFICIAL_MODEL_TYPES, OmniTextConfig, OmniThinkerConfig, thinker_generation_config
from .generation_thinker import expand_media_for_generation, media_kwargs
from .modeling_audio_encoder import OmniAudioEncoder
from .modeling_vision_encoder import OmniVisionEncoder

logger = logging.get_logger(__name__)


class OmniThinkerModel(OmniDecoderModel):
    """The Thinker's language model."""

    config: OmniTextConfig
    config_class = OmniTextConfig


@dataclass
class OmniThinkerOutput(CausalLMOutputWithPast):
    """Causal LM output plus `rope_deltas` `(batch, 1)`, which continue TMRoPE positions after this call."""

    rope_deltas: torch.Tensor | None = None


class OmniThinkerForConditionalGeneration(OmniPreTrainedModel, LeanGenerationMixin, GenerationMixin):
    """The Thinker: `audio_tower`, `visual`, `model` (decoder) and `lm_head`, with official parameter names.

    Loads our own checkpoints and official Qwen2.5-Omni ones (full model with a `thinker.` prefix, or a thinker
    alone). During generation only the last prompt position goes through the lm_head.

    Example:

    ```python
    >>> from omni_hf import OmniProcessor, OmniThinkerForConditionalGeneration
    >>> processor = OmniProcessor.from_pretrained("Qwen/Qwen2.5-Omni-7B")
    >>> thinker = OmniThinkerForConditionalGeneration.from_pretrained("Qwen/Qwen2.5-Omni-7B")
    >>> messages = [{"role": "user", "content": [{"type": "audio", "audio": "question.wav"}]}]
    >>> inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    >>> reply = thinker.generate(**inputs, max_new_tokens=64)
    ```"""

    config: OmniThinkerConfig
    config_class = OmniThinkerConfig
    _keys_to_ignore_on_load_unexpected = [r"^talker\.", r"^token2wav\."]
    _no_split_modules = ["WhisperEncoderLayer", "OmniVisionBlock", "Qwen2DecoderLayer"]
    # Auto classes a saved Thinker names in its `auto_map` (transformers maps `qwen2_5_omni_thinker` to these).
    auto_classes = ("AutoModel", "AutoModelForCausalLM", "AutoModelForImageTextToText")
    input_modalities = ("image", "video", "audio", "text")
    output_modalities = ("text",)

    def __init__(self, config: OmniThinkerConfig):
        super().__init__(config)
        self.audio_tower = OmniAudioEncoder._from_config(config.audio_config)
        self.visual = OmniVisionEncoder._from_config(config.vision_config)
        self.model = OmniThinkerModel._from_config(config.text_config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.rope_tokens = TMRoPETokens.from_config(config)
        self.post_init()
        self.generation_config = thinker_generation_config(config)

    def adjust_generation_fn(self, generation_config, *args, **kwargs):
        """After loading: a checkpoint's `generation_config.json` wins; what it leaves unset (or a folder without one,
        e.g. a full model's) falls back to the Thinker's own defaults, so generation stops at `<|im_end|>`."""
        super().adjust_generation_fn(generation_config, *args, **kwargs)
        defaults = thinker_generation_config(self.config)
        for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
            if getattr(self.generation_config, key, None) is None:
                setattr(self.generation_config, key, getattr(defaults, key))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Also loads the thinker of an official Qwen2.5-Omni checkpoint (its `thinker.` prefix is stripped)."""
        if kwargs.get("key_mapping") is None and kwargs.get("config") is None:
            hub_kwargs = {
                k: kwargs[k]
                for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder")
                if k in kwargs
            }
            raw, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
            if raw.get("model_type") in (*OFFICIAL_MODEL_TYPES[:1], "omni_hf"):
                kwargs["key_mapping"] = {r"^thinker\.": ""}
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        # Our own layout has no prefix: `save_pretrained` must not re-add `thinker.` by reverting the mapping.
        model._weight_conversions = None
        return loaded

    def write_pretrained(self, save_directory, *args, **kwargs):
        """Weights (safetensors), config and the code for `trust_remote_code` (a flat, self-contained set); called
        by the staged `save_pretrained`."""
        model_ref, config_ref = auto_map_entry(type(self)), auto_map_entry(type(self.config))
        self.config.auto_map = {"AutoConfig": config_ref} | {name: model_ref for name in self.auto_classes}
        result = super().write_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_code_set([type(self), type(self.config)], save_directory)
        return result

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module):
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module):
        self.lm_head = value

    # ---------------------------------------------------------------- multimodal embeddings
    def get_audio_features(
        self,
        input_features,
        feature_attention_mask=None,
        audio_feature_lengths=None,
        output_hidden_states: bool | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """Audio tokens: `last_hidden_state` `(total_audio_tokens, hidden)` for padded features
        `(num_clips, mels, frames)`; `hidden_states` (input of the first layer + every layer's output, frames of all
        clips concatenated) with `output_hidden_states`."""
        if feature_attention_mask is None and audio_feature_lengths is not None:
            frames = torch.arange(input_features.shape[-1], device=input_features.device)
            feature_attention_mask = (frames < audio_feature_lengths.unsqueeze(1)).long()
        with _LayerRecorder(self.audio_tower.layers, self._want_hidden(output_hidden_states)) as recorder:
            out = self.audio_tower(input_features, feature_attention_mask=feature_attention_mask)
        out.hidden_states = recorder.hidden_states
        return out if return_dict else out.to_tuple()

    def get_image_features(
        self,
        pixel_values,
        image_grid_thw,
        output_hidden_states: bool | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """Image tokens: `pooler_output` `(total_image_tokens, hidden)` (after the 2x2 merger), `last_hidden_state`
        `(total_patches, vision_hidden)`; `hidden_states` per block with `output_hidden_states`."""
        return self._vision_features(pixel_values, image_grid_thw, output_hidden_states, return_dict)

    def get_video_features(
        self,
        pixel_values_videos,
        video_grid_thw,
        output_hidden_states: bool | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """Video tokens: as `get_image_features`, `pooler_output` `(total_video_tokens, hidden)`."""
        return self._vision_features(pixel_values_videos, video_grid_thw, output_hidden_states, return_dict)

    def _vision_features(self, pixels, grid_thw, output_hidden_states, return_dict):
        with _LayerRecorder(self.visual.blocks, self._want_hidden(output_hidden_states)) as recorder:
            out = self.visual(pixels.to(self.visual.dtype), grid_thw=grid_thw)
        out.hidden_states = recorder.hidden_states
        return out if return_dict else out.to_tuple()

    def _want_hidden(self, output_hidden_states: bool | None) -> bool:
        return bool(self.config.output_hidden_states if output_hidden_states is None else output_hidden_states)

    def _scatter(self, embeds, input_ids, token_id, features, name) -> torch.Tensor:
        mask = input_ids == token_id
        found = int(mask.sum())
        if found != features.shape[0]:
            raise ValueError(
                f"The prompt has {found} {name} placeholder tokens but the {name} inputs give {features.shape[0]} "
                f"{name} embeddings: build inputs with OmniProcessor so placeholders and media match."
            )
        return embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.device, embeds.dtype))

    def embed_inputs(
        self,
        input_ids,
        input_features=None,
        feature_attention_mask=None,
        audio_feature_lengths=None,
        pixel_values=None,
        image_grid_thw=None,
        pixel_values_videos=None,
        video_grid_thw=None,
    ) -> torch.Tensor:
        """Token embeddings `(batch, seq, hidden)` with audio, image and video embeddings in their placeholders."""
        embeds = self.model.embed_tokens(input_ids)
        if input_features is not None:
            audio = self.get_audio_features(input_features, feature_attention_mask, audio_feature_lengths)
            audio = audio.last_hidden_state
            embeds = self._scatter(embeds, input_ids, self.config.audio_token_id, audio, "audio")
        if pixel_values is not None:
            if image_grid_thw is None:
                raise ValueError("pixel_values needs image_grid_thw")
            image = self.get_image_features(pixel_values, image_grid_thw, output_hidden_states=False).pooler_output
            embeds = self._scatter(embeds, input_ids, self.config.image_token_id, image, "image")
        if pixel_values_videos is not None:
            if video_grid_thw is None:
                raise ValueError("pixel_values_videos needs video_grid_thw")
            video = self.get_video_features(pixel_values_videos, video_grid_thw, output_hidden_states=False)
            video = video.pooler_output
            embeds = self._scatter(embeds, input_ids, self.config.video_token_id, video, "video")
        return embeds

    def get_rope_index(
        self,
        input_ids,
        attention_mask=None,
        image_grid_thw=None,
        video_grid_thw=None,
        feature_attention_mask=None,
        audio_feature_lengths=None,
        video_second_per_grid=None,
        use_audio_in_video=None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TMRoPE ids `(3, batch, seq)` and `rope_deltas` `(batch, 1)` of a prompt (see `omni_hf.common.tmrope`)."""
        if feature_attention_mask is not None:
            audio_feature_lengths = feature_attention_mask.sum(-1)
        return get_rope_index(
            input_ids,
            self.rope_tokens,
            attention_mask=attention_mask,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            audio_feature_lengths=audio_feature_lengths,
            video_second_per_grid=video_second_per_grid,
            use_audio_in_video=use_audio_in_video,
        )

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        input_features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        audio_feature_lengths: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        use_audio_in_video: bool | None = None,
        video_second_per_grid: torch.Tensor | None = None,
        rope_deltas: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool = True,
        **kwargs,
    ) -> OmniThinkerOutput | tuple:
        """
        Args:
            input_ids: `(batch, seq)` with expanded media placeholders (from `OmniProcessor`).
            input_features: `(num_clips, mels, frames)` padded log-mel features, `feature_attention_mask` `(num_clips, frames)`.
            pixel_values / pixel_values_videos: `(num_patches, 1176)` patches, with `image_grid_thw` / `video_grid_thw`.
            position_ids: `(3, batch, seq)` TMRoPE ids; computed from the prompt when omitted (prefill), or from
                `rope_deltas` and the cache length when decoding. `(4, batch, seq)` is transformers' padding-free
                layout: a text row (restarting at 0 where a packed sequence starts) then the three TMRoPE rows.
            use_audio_in_video: whether videos are interleaved with their audio; detected from the prompt when None.
            logits_to_keep: compute logits only for the last `logits_to_keep` positions (0 = all).

        Returns:
            [`OmniThinkerOutput`] with `logits` `(batch, kept_positions, vocab)` and `rope_deltas`.
        """
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("Pass input_ids or inputs_embeds")
            inputs_embeds = self.embed_inputs(
                input_ids,
                input_features,
                feature_attention_mask,
                audio_feature_lengths,
                pixel_values,
                image_grid_thw,
                pixel_values_videos,
                video_grid_thw,
            )
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            if past == 0 and input_ids is not None:
                position_ids, rope_deltas = self.get_rope_index(
                    input_ids,
                    attention_mask,
                    image_grid_thw,
                    video_grid_thw,
                    feature_attention_mask,
                    audio_feature_lengths,
                    video_second_per_grid,
                    use_audio_in_video,
                )
            else:
                batch, seq = inputs_embeds.shape[:2]
                position_ids = torch.arange(past, past + seq, device=inputs_embeds.device).expand(batch, -1)
                if rope_deltas is not None:
                    position_ids = position_ids + rope_deltas.to(position_ids.device)
        elif position_ids.dim() == 2:
            position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)
        outputs = self.model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=self._want_hidden(output_hidden_states),
            output_attentions=bool(self.config.output_attentions if output_attentions is None else output_attentions),
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        output = OmniThinkerOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            rope_deltas=rope_deltas,
        )
        return output if return_dict else output.to_tuple()

    # ---------------------------------------------------------------- generation
    def decode_step_embeds(self, tokens, model_kwargs) -> torch.Tensor:
        """Lean decode step input (see `omni_hf.common.step_decoder`): `tokens` `(1,)` → embeddings `(1, 1, hidden)`."""
        return self.model.embed_tokens(tokens[:, None])

    def decode_head(self) -> nn.Linear:
        return self.lm_head

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        """TMRoPE ids `(3, batch, seq)` of the prompt; `generate` then extends each axis by one per step."""
        input_ids = model_kwargs.get("input_ids", inputs_tensor)
        is_ids = input_ids is not None and input_ids.dim() == 2 and input_ids.shape[-1] > 0
        is_ids = is_ids and not input_ids.is_floating_point()
        cache = model_kwargs.get("cache")
        if is_ids and (cache is None or cache.get_seq_length() == 0):
            position_ids, _ = self.get_rope_index(
                input_ids,
                model_kwargs.get("attention_mask"),
                model_kwargs.get("image_grid_thw"),
                model_kwargs.get("video_grid_thw"),
                model_kwargs.get("feature_attention_mask"),
                model_kwargs.get("audio_feature_lengths"),
                model_kwargs.get("video_second_per_grid"),
                model_kwargs.get("use_audio_in_video"),
            )
            return position_ids
        text_positions = super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)
        return text_positions.unsqueeze(0).expand(3, -1, -1)

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """Beam search / `num_return_sequences`: repeat each prompt's own media with it (not row by row)."""
        has_ids = input_ids is not None and input_ids.shape[-1] > 0
        media = {k: model_kwargs.pop(k) for k in media_kwargs() if k in model_kwargs} if has_ids else {}
        input_ids_out, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        if media and expand_size > 1:
            media = expand_media_for_generation(self.config, input_ids, expand_size, media)
        return input_ids_out, {**model_kwargs, **media}


class _LayerRecorder:
    """Context manager recording `(input of the first layer, output of each layer)` of an encoder when enabled."""

    def __init__(self, layers: nn.ModuleList, enabled: bool):
        self.layers, self.enabled, self.handles = layers, enabled, []
        self.hidden_states: tuple[torch.Tensor, ...] | None = None

    def __enter__(self):
        if self.enabled:
            recorded: list[torch.Tensor] = []
            self.hidden_states = recorded

            def first(module, args, kwargs):
                recorded.append(args[0] if args else kwargs["hidden_states"])

            def each(module, args, kwargs, output):
                recorded.append(output[0] if isinstance(output, tuple) else output)

            self.handles.append(self.layers[0].register_forward_pre_hook(first, with_kwargs=True))
            self.handles += [layer.register_forward_hook(each, with_kwargs=True) for layer in self.layers]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        if self.hidden_states is not None:
            self.hidden_states = tuple(self.hidden_states)
        return False


__all__ = ["OmniThinkerForConditionalGeneration", "OmniThinkerModel", "OmniThinkerOutput"]
