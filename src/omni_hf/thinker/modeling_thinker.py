"""The Thinker: audio + vision encoders feeding a Qwen2 decoder with TMRoPE, generating text."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import logging

from ..common.modeling_decoder import OmniDecoderModel
from ..common.modeling_utils import OmniPreTrainedModel
from ..common.remote_code import auto_map_entry, write_code_set
from ..common.step_decoder import LeanGenerationMixin
from ..common.tmrope import TMRoPETokens, get_rope_index
from .configuration_thinker import OFFICIAL_MODEL_TYPES, OmniTextConfig, OmniThinkerConfig
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

    def __init__(self, config: OmniThinkerConfig):
        super().__init__(config)
        self.audio_tower = OmniAudioEncoder._from_config(config.audio_config)
        self.visual = OmniVisionEncoder._from_config(config.vision_config)
        self.model = OmniThinkerModel._from_config(config.text_config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.rope_tokens = TMRoPETokens.from_config(config)
        self.post_init()

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
        self.config.auto_map = {"AutoConfig": config_ref, "AutoModel": model_ref, "AutoModelForCausalLM": model_ref}
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
        self, input_features, feature_attention_mask=None, audio_feature_lengths=None
    ) -> torch.Tensor:
        """Audio tokens `(total_audio_tokens, hidden)` for padded features `(num_clips, mels, frames)`."""
        if feature_attention_mask is None and audio_feature_lengths is not None:
            frames = torch.arange(input_features.shape[-1], device=input_features.device)
            feature_attention_mask = (frames < audio_feature_lengths.unsqueeze(1)).long()
        return self.audio_tower(input_features, feature_attention_mask=feature_attention_mask).last_hidden_state

    def get_image_features(self, pixel_values, image_grid_thw) -> torch.Tensor:
        """Image tokens `(total_image_tokens, hidden)`."""
        return self.visual(pixel_values.to(self.visual.dtype), grid_thw=image_grid_thw).pooler_output

    def get_video_features(self, pixel_values_videos, video_grid_thw) -> torch.Tensor:
        """Video tokens `(total_video_tokens, hidden)`."""
        return self.visual(pixel_values_videos.to(self.visual.dtype), grid_thw=video_grid_thw).pooler_output

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
            embeds = self._scatter(embeds, input_ids, self.config.audio_token_id, audio, "audio")
        if pixel_values is not None:
            if image_grid_thw is None:
                raise ValueError("pixel_values needs image_grid_thw")
            image = self.get_image_features(pixel_values, image_grid_thw)
            embeds = self._scatter(embeds, input_ids, self.config.image_token_id, image, "image")
        if pixel_values_videos is not None:
            if video_grid_thw is None:
                raise ValueError("pixel_values_videos needs video_grid_thw")
            video = self.get_video_features(pixel_values_videos, video_grid_thw)
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
        **kwargs,
    ) -> OmniThinkerOutput:
        """
        Args:
            input_ids: `(batch, seq)` with expanded media placeholders (from `OmniProcessor`).
            input_features: `(num_clips, mels, frames)` padded log-mel features, `feature_attention_mask` `(num_clips, frames)`.
            pixel_values / pixel_values_videos: `(num_patches, 1176)` patches, with `image_grid_thw` / `video_grid_thw`.
            position_ids: `(3, batch, seq)` TMRoPE ids; computed from the prompt when omitted (prefill), or from
                `rope_deltas` and the cache length when decoding.
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
            output_hidden_states=output_hidden_states,
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
        return OmniThinkerOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            rope_deltas=rope_deltas,
        )

    # ---------------------------------------------------------------- generation
    def decode_step_hidden(self, tokens, position_ids, cache, model_kwargs) -> torch.Tensor:
        """Lean decode step (see `omni_hf.common.step_decoder`): `tokens` `(1,)` at TMRoPE `position_ids`
        `(3, 1, 1)` after the cached positions → final hidden state `(1, 1, hidden)`; the cache grows by one."""
        return self.model.decode_step(self.model.embed_tokens(tokens[:, None]), position_ids, cache)

    def decode_head(self) -> nn.Linear:
        return self.lm_head

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        """TMRoPE ids `(3, batch, seq)` of the prompt; `generate` then extends each axis by one per step."""
        input_ids = model_kwargs.get("input_ids", inputs_tensor)
        is_ids = input_ids is not None and input_ids.dim() == 2 and not input_ids.is_floating_point()
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


__all__ = ["OmniThinkerForConditionalGeneration", "OmniThinkerModel", "OmniThinkerOutput"]
