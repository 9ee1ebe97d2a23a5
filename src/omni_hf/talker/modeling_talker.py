"""The Talker: a dual-track decoder turning the Thinker's reply stream into speech codec tokens (50 per second)."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationConfig, GenerationMixin
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..common.modeling_decoder import OmniDecoderModel
from ..common.modeling_utils import OmniPreTrainedModel
from ..common.step_decoder import LeanGenerationMixin
from ..common.tmrope import MEDIA_LAYOUT_KEYS, TMRoPETokens, get_rope_index, media_layout
from .configuration_talker import OmniTalkerConfig


class OmniTalkerModel(OmniDecoderModel):
    """The Talker's decoder; its `embed_tokens` embeds codec tokens in the Thinker's width."""

    config: OmniTalkerConfig
    config_class = OmniTalkerConfig


@dataclass
class OmniTalkerOutput(CausalLMOutputWithPast):
    """Causal LM output plus `thinker_reply_part` `(batch, remaining, embedding_size)`: the Thinker entries not yet
    consumed, carried by `generate` to the next step."""

    thinker_reply_part: torch.Tensor | None = None


def talker_generation_config(config: OmniTalkerConfig) -> GenerationConfig:
    """The official sampling defaults; only speech codes and the end tokens can be sampled (bos and every other
    control token are suppressed, so random or fine-tuned talkers never emit codes the DiT cannot embed)."""
    ends = config.codec_eos_token_ids
    never = [i for i in range(config.num_speech_codes, config.vocab_size) if i not in ends]
    return GenerationConfig(
        do_sample=True,
        top_k=40,
        top_p=0.8,
        temperature=0.9,
        repetition_penalty=1.05,
        eos_token_id=ends,
        pad_token_id=config.tts_codec_pad_token_id,
        suppress_tokens=never,
        max_new_tokens=4096,
    )


class OmniTalkerForConditionalGeneration(OmniPreTrainedModel, LeanGenerationMixin, GenerationMixin):
    """The Talker (official names: `thinker_to_talker_proj`, `model.*`, `codec_head`).

    Each position's input is `thinker_to_talker_proj(thinker_entry + codec_embedding)`, where the Thinker entry is
    its final hidden state plus the embedding of its token (media positions zeroed), and `codec_embedding` embeds
    the previous codec token (none for prompt positions, marked with `tts_codec_mask_token_id`). Build the inputs
    with `omni_hf.talker.talker_inputs.build_talker_inputs`.
    """

    config: OmniTalkerConfig
    config_class = OmniTalkerConfig
    base_model_prefix = "model"
    _no_split_modules = ["Qwen2DecoderLayer"]

    def __init__(self, config: OmniTalkerConfig):
        super().__init__(config)
        self.thinker_to_talker_proj = nn.Linear(config.embedding_size, config.hidden_size)
        self.model = OmniTalkerModel._from_config(config)
        self.codec_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rope_tokens = TMRoPETokens.from_config(config)
        self.post_init()
        self.generation_config = talker_generation_config(config)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module):
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.codec_head

    def set_output_embeddings(self, value: nn.Module):
        self.codec_head = value

    def embed_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codec embeddings `(batch, seq, embedding_size)`; `tts_codec_mask_token_id` positions get zeros."""
        embeds = self.model.embed_tokens(codes)
        return embeds * (codes != self.config.tts_codec_mask_token_id).unsqueeze(-1).to(embeds.dtype)

    def get_rope_index(self, input_text_ids, attention_mask=None, **media) -> tuple[torch.Tensor, torch.Tensor]:
        """TMRoPE ids `(3, batch, seq)` of the Talker prompt, from the Thinker-vocabulary ids of its positions."""
        feature_attention_mask = media.pop("feature_attention_mask", None)
        if feature_attention_mask is not None:
            media["audio_feature_lengths"] = feature_attention_mask.sum(-1)
        return get_rope_index(input_text_ids, self.rope_tokens, attention_mask=attention_mask, **media)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        thinker_reply_part: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool | None = None,
        input_text_ids: torch.LongTensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        video_second_per_grid: torch.Tensor | None = None,
        audio_feature_lengths: torch.LongTensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        use_audio_in_video: bool | None = None,
        **kwargs,
    ) -> OmniTalkerOutput:
        """
        Args:
            input_ids: `(batch, seq)` codec ids of the positions (the previous code at each step; the mask token for
                prompt positions).
            inputs_embeds: `(batch, seq, embedding_size)` the Thinker track of the same positions (prefill and
                teacher-forced training). When omitted (decoding), the next entry of `thinker_reply_part` is used.
            thinker_reply_part: `(batch, n, embedding_size)` Thinker entries still to come, consumed one per decode
                step; the last one (tts-pad) repeats.
            position_ids: `(3, batch, seq)` TMRoPE ids; from `input_text_ids` when omitted at prefill.
            labels: `(batch, seq)` codec ids to predict (shifted inside, -100 ignored): a teacher-forced
                cross-entropy loss.
            input_text_ids, image_grid_thw, video_grid_thw, video_second_per_grid, audio_feature_lengths /
                feature_attention_mask, use_audio_in_video: the prompt's Thinker ids and media layout, for TMRoPE.

        Returns:
            [`OmniTalkerOutput`] with float32 `logits` `(batch, kept, vocab_size)`.
        """
        if input_ids is None and inputs_embeds is None:
            raise ValueError("Pass input_ids (codec ids) and/or inputs_embeds (the Thinker track)")
        remaining = thinker_reply_part
        if inputs_embeds is None:
            if thinker_reply_part is None:
                raise ValueError(
                    "Decoding without inputs_embeds needs thinker_reply_part (the Thinker entries to come)"
                )
            steps = input_ids.shape[1]
            if thinker_reply_part.shape[1] < steps:
                raise ValueError(f"thinker_reply_part has {thinker_reply_part.shape[1]} entries for {steps} steps")
            inputs_embeds = thinker_reply_part[:, :steps]
            remaining = thinker_reply_part[:, steps:] if thinker_reply_part.shape[1] > steps else thinker_reply_part
        hidden = inputs_embeds if input_ids is None else inputs_embeds + self.embed_codes(input_ids)
        if position_ids is None and input_text_ids is not None and (cache is None or cache.get_seq_length() == 0):
            media = {
                "image_grid_thw": image_grid_thw,
                "video_grid_thw": video_grid_thw,
                "video_second_per_grid": video_second_per_grid,
                "audio_feature_lengths": audio_feature_lengths,
                "feature_attention_mask": feature_attention_mask,
                "use_audio_in_video": use_audio_in_video,
            }
            position_ids, _ = self.get_rope_index(input_text_ids, attention_mask, **media_layout(media))
        outputs = self.model(
            inputs_embeds=self.thinker_to_talker_proj(hidden),
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        states = outputs.last_hidden_state
        logits = self.codec_head(states[:, -logits_to_keep:] if logits_to_keep else states).float()
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size)
        return OmniTalkerOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            thinker_reply_part=remaining,
        )

    # ---------------------------------------------------------------- generation
    def decode_step_embeds(self, tokens, model_kwargs) -> torch.Tensor:
        """Lean decode step input (see `omni_hf.common.step_decoder`): the previous code `tokens` `(1,)` plus the
        next entry of `model_kwargs["thinker_reply_part"]` (consumed; the last one repeats), projected → decoder
        input `(1, 1, hidden)`."""
        part = model_kwargs["thinker_reply_part"]
        model_kwargs["thinker_reply_part"] = part[:, 1:] if part.shape[1] > 1 else part
        return self.thinker_to_talker_proj(part[:, :1] + self.embed_codes(tokens[:, None]))

    def decode_head(self) -> nn.Linear:
        return self.codec_head

    def prepare_inputs_for_generation(self, input_ids, inputs_embeds=None, is_first_iteration=False, **kwargs):
        inputs = super().prepare_inputs_for_generation(
            input_ids, inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs
        )
        if inputs_embeds is not None and is_first_iteration:
            inputs["input_ids"] = input_ids  # the prompt's codec ids complement the Thinker track
        if not is_first_iteration:
            inputs.pop("input_text_ids", None)
            for key in MEDIA_LAYOUT_KEYS:
                inputs.pop(key, None)
        return inputs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, *args, **kwargs):
        """Carry the Thinker entries not yet consumed to the next step."""
        updated = super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)
        if outputs.thinker_reply_part is not None:
            updated["thinker_reply_part"] = outputs.thinker_reply_part
        return updated

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        """TMRoPE ids of the prompt from `input_text_ids`; `generate` then extends each axis by one per step."""
        text_ids = model_kwargs.get("input_text_ids")
        if text_ids is None:
            positions = super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)
            return positions.unsqueeze(0).expand(3, -1, -1)
        position_ids, _ = self.get_rope_index(
            text_ids, model_kwargs.get("attention_mask"), **media_layout(model_kwargs)
        )
        return position_ids


__all__ = ["OmniTalkerForConditionalGeneration", "OmniTalkerModel", "OmniTalkerOutput", "talker_generation_config"]
