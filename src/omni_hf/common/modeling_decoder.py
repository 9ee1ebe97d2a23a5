"""The Qwen2 decoder with TMRoPE shared by the Thinker's language model and the Talker."""

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, StaticCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm
from transformers.utils import logging

from .compiled_step import static_decode_step
from .modeling_utils import OmniPreTrainedModel
from .tmrope import mrope_axis_per_frequency

logger = logging.get_logger(__name__)

# Per-layer-type masks meaning "attend to every cached position": one new token needs no causal mask.
NO_MASK = {"full_attention": None, "sliding_attention": None}


class OmniTMRoPEEmbedding(nn.Module):
    """Rotary cos/sin for 3-axis (time, height, width) positions; each frequency follows one axis (`mrope_section`)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        half = sum(config.rope_parameters["mrope_section"])
        self.attention_scaling = self._inv_freq_and_scaling()[1]
        self.register_buffer("inv_freq", torch.empty(half), persistent=False)
        self.register_buffer("axis", torch.empty(half, dtype=torch.long), persistent=False)

    def _inv_freq_and_scaling(self) -> tuple[torch.Tensor, float]:
        rope_type = self.config.rope_parameters.get("rope_type", "default")
        if rope_type != "default":
            return ROPE_INIT_FUNCTIONS[rope_type](self.config, device="cpu")
        head_dim = getattr(self.config, "head_dim", None) or self.config.hidden_size // self.config.num_attention_heads
        theta = self.config.rope_parameters["rope_theta"]
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float, device="cpu") / head_dim
        return 1.0 / (theta**exponents), 1.0

    def constant_buffers(self) -> dict[str, torch.Tensor]:
        return {
            "inv_freq": self._inv_freq_and_scaling()[0],
            "axis": mrope_axis_per_frequency(self.config.rope_parameters["mrope_section"]),
        }

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`position_ids` `(3, batch, seq)` → cos, sin `(batch, seq, head_dim)` in `x.dtype`."""
        per_frequency = position_ids.permute(1, 2, 0)[..., self.axis]  # (batch, seq, head_dim / 2)
        freqs = per_frequency.float() * self.inv_freq.float()
        emb = torch.cat([freqs, freqs], dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


class OmniDecoderModel(OmniPreTrainedModel):
    """Qwen2 decoder layers + TMRoPE (official names: `embed_tokens, layers.*, norm`).

    `embed_tokens` is `config.embedding_size` wide when the config has one (the Talker embeds codec tokens in the
    Thinker's width and projects them itself), else `hidden_size`.
    """

    _no_split_modules = ["Qwen2DecoderLayer"]

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        width = getattr(config, "embedding_size", None) or config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, width, self.padding_idx)
        self.layers = nn.ModuleList([Qwen2DecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = Qwen2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = OmniTMRoPEEmbedding(config)
        self.has_sliding_layers = "sliding_attention" in config.layer_types
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """
        Args:
            position_ids: `(3, batch, seq)` TMRoPE ids, or `(batch, seq)` text positions (used on all three axes), or
                transformers' padding-free `(4, batch, seq)`: a text row first (restarting at 0 where a packed
                sequence starts; it shapes the mask), then the three TMRoPE rows.

        Returns:
            `last_hidden_state` `(batch, seq, hidden)` after the final norm; `hidden_states` (embeddings + every
            layer, the last one normed) when `output_hidden_states`; `attentions` (one `(batch, heads, seq, keys)`
            per layer) when `output_attentions` (eager attention only).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        step_fn = kwargs.pop("decode_step_fn", None)
        if attention_mask is NO_MASK and isinstance(cache, StaticCache):  # a lean step over a static cache
            if inputs_embeds is None:
                inputs_embeds = self.embed_tokens(input_ids)
            hidden = (step_fn or static_decode_step)(self, inputs_embeds, position_ids, cache)
            return BaseModelOutputWithPast(last_hidden_state=hidden, cache=cache)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        past = cache.get_seq_length() if cache is not None else 0
        batch, seq = inputs_embeds.shape[:2]
        if past + seq > self.config.max_position_embeddings:
            raise ValueError(
                f"The sequence ({past} cached + {seq} new tokens) is longer than the model's context of "
                f"{self.config.max_position_embeddings} tokens."
            )
        if position_ids is None:
            position_ids = torch.arange(past, past + seq, device=inputs_embeds.device).expand(batch, -1)
        text_positions = None
        if position_ids.dim() == 2:
            position_ids = position_ids.unsqueeze(0).expand(3, -1, -1)
        elif position_ids.shape[0] == 4:
            text_positions, position_ids = position_ids[0], position_ids[1:]
            if bool((text_positions[:, 1:] - text_positions[:, :-1] != 1).any()):  # packed sequences
                if past > 0 or attention_mask is not None:
                    raise ValueError(
                        "Packed sequences (4-row position_ids whose text row restarts) need attention_mask=None and "
                        "no cached tokens: each packed sequence attends only to itself, which a cache cannot continue."
                    )
                cache, use_cache = None, False  # the mask follows the packing; no cache to continue from
        if output_attentions and self.config._attn_implementation != "eager":
            logger.warning_once(
                f"output_attentions needs attn_implementation='eager' (this model uses "
                f"{self.config._attn_implementation!r}): no attentions are returned. Load the model with "
                "attn_implementation='eager' or call set_attn_implementation('eager')."
            )
            output_attentions = False
        if not isinstance(masks := attention_mask, dict):
            mask_kwargs = dict(
                config=self.config,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                cache=cache,
                position_ids=text_positions,
            )
            masks = {"full_attention": create_causal_mask(**mask_kwargs)}
            if self.has_sliding_layers:
                masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)

        hidden = inputs_embeds
        rotary = self.rotary_emb(hidden, position_ids)
        all_hidden = (hidden,) if output_hidden_states else None
        attentions, hooks = [], []
        if output_attentions:
            hooks = [
                layer.self_attn.register_forward_hook(lambda module, args, out: attentions.append(out[1]))
                for layer in self.layers
            ]
        try:
            for i, layer in enumerate(self.layers):
                hidden = layer(
                    hidden,
                    attention_mask=masks[self.config.layer_types[i]],
                    position_embeddings=rotary,
                    cache=cache,
                    use_cache=use_cache,
                    **kwargs,
                )
                if output_hidden_states:
                    all_hidden += (hidden,)
        finally:
            for hook in hooks:
                hook.remove()
        hidden = self.norm(hidden)
        if output_hidden_states:
            all_hidden = all_hidden[:-1] + (hidden,)
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            cache=cache,
            hidden_states=all_hidden,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def decode_step(
        self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, cache: Cache, step_fn=None
    ) -> torch.Tensor:
        """One new position `(1, 1, width)` at TMRoPE `position_ids` `(3, 1, 1)` after the cached ones, with no
        mask (full attention layers only) → final hidden state `(1, 1, hidden)`; the cache grows by one. A
        `StaticCache` runs `static_decode_step` (attending to its filled positions), or `step_fn` (the same step,
        compiled) when given. Goes through `forward`, so forward hooks see every step."""
        return self(
            inputs_embeds=inputs_embeds,
            attention_mask=NO_MASK,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            decode_step_fn=step_fn,
        ).last_hidden_state


__all__ = ["NO_MASK", "OmniDecoderModel", "OmniTMRoPEEmbedding"]
