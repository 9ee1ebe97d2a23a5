"""A `torch.compile`d lean decode step over transformers' `StaticCache`, for CPU decoding of one sequence.

transformers compiles the whole forward when generating with `cache_implementation="static"` and a
`compile_config`, and attends over the full static length with a mask: right for CUDA graphs, but on CPU every step
then reads the whole preallocated cache and pays the generic `generate` loop. Here the decoder's layers are
traced once per model into one graph (norms, projections, rotary, MLPs fused by inductor), with the cache write
and an attention over the filled positions only: the filled length is read as a data-dependent size. The buffers'
length dimension is marked dynamic, so one compile serves every cache size; the warm-up is paid on the first step of
each model (see `compile_warmup_seconds`).

Enable it with the standard options: `model.generate(..., cache_implementation="static",
compile_config=CompileConfig(...))` (for the full model, the `thinker_` / `talker_` prefixed forms). On CUDA the
same options keep transformers' own compiled loop (CUDA graphs need the masked static attention).
"""

import time

import torch
from torch import nn
from transformers.cache_utils import StaticCache
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb
from transformers.utils import logging

logger = logging.get_logger(__name__)

_COMPILED: dict[tuple, object] = {}
compile_warmup_seconds: dict[str, float] = {}  # model class name -> seconds of its first compiled step


def append_and_attend(query, key, value, cached, scaling: float) -> torch.Tensor:
    """Write one position's `key`, `value` `(1, kv_heads, 1, head_dim)` into the static cache layer `cached` at its
    `cumulative_length`, advance it, and attend `query` `(1, heads, 1, head_dim)` to the filled positions only →
    `(1, heads, 1, head_dim)`. Compiled, the filled length is a data-dependent size (`capture_scalar_outputs`)."""
    length = cached.cumulative_length
    filled = length.item()
    torch._check(filled >= 0)
    torch._check(filled < cached.keys.shape[2], lambda: "The static cache is full: generate with a larger max_length")
    cached.keys.index_copy_(2, length.view(1), key)
    cached.values.index_copy_(2, length.view(1), value)
    length.add_(1)
    return nn.functional.scaled_dot_product_attention(
        query,
        cached.keys[:, :, : filled + 1],
        cached.values[:, :, : filled + 1],
        scale=scaling,
        enable_gqa=query.shape[1] != cached.keys.shape[1],
    )


def static_decode_step(decoder, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, cache: StaticCache):
    """One new position through `decoder` (an `OmniDecoderModel` with full-attention Qwen2 layers):
    `inputs_embeds` `(1, 1, hidden)` at TMRoPE `position_ids` `(3, 1, 1)` → final hidden state `(1, 1, hidden)`;
    every layer of `cache` grows by one. The layer arithmetic is Qwen2's, with the cache write and attention in
    `append_and_attend`."""
    cos, sin = decoder.rotary_emb(inputs_embeds, position_ids)
    hidden = inputs_embeds
    for layer, cached in zip(decoder.layers, cache.layers):
        attention = layer.self_attn
        states = layer.input_layernorm(hidden)
        heads = (1, 1, -1, attention.head_dim)
        query = attention.q_proj(states).view(heads).transpose(1, 2)
        key = attention.k_proj(states).view(heads).transpose(1, 2)
        value = attention.v_proj(states).view(heads).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        attended = append_and_attend(query, key, value, cached, attention.scaling)
        hidden = hidden + attention.o_proj(attended.transpose(1, 2).reshape(1, 1, -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return decoder.norm(hidden)


def compiled_decoding_applies(model, generation_config, model_kwargs: dict) -> bool:
    """Whether a lean decode of `model` should run the compiled step: a CPU model, a `StaticCache`, and a
    `compile_config` in `generation_config`."""
    cache = model_kwargs.get("cache")
    quantizer = getattr(model, "hf_quantizer", None)
    return (
        generation_config.compile_config is not None
        and type(cache) is StaticCache
        and model.device.type == "cpu"
        and (quantizer is None or quantizer.is_compileable)
    )


def compiled_decode_step(compile_config):
    """`static_decode_step` compiled with `compile_config` (a transformers `CompileConfig`), built once per setting.
    CUDA-graph modes (`reduce-overhead`) do not apply on CPU and compile in the default mode; `options` (inductor's,
    e.g. `{"cpp_wrapper": True}`) take precedence over `mode`."""
    options = dict(compile_config.options or {})
    mode = None if options or compile_config.mode in ("reduce-overhead", "max-autotune") else compile_config.mode
    key = (compile_config.backend, mode, tuple(sorted(options.items())))
    if key not in _COMPILED:
        settings = dict(
            fullgraph=True, dynamic=False, backend=compile_config.backend, mode=mode, options=options or None
        )
        _COMPILED[key] = torch.compile(static_decode_step, **settings)
    return _COMPILED[key]


class CompiledStepRunner:
    """Runs a model's decoder one position at a time through the compiled step (see the module docstring)."""

    def __init__(self, model, compile_config, cache: StaticCache):
        self.step_fn = compiled_decode_step(compile_config)
        self.name = type(model).__name__
        self.first = True
        for cached in cache.layers:  # one graph for every cache size
            torch._dynamo.mark_dynamic(cached.keys, 2)
            torch._dynamo.mark_dynamic(cached.values, 2)

    def __call__(self, decoder, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, cache: StaticCache):
        """`static_decode_step(decoder, ...)`, compiled."""
        if not self.first:
            return self._run(decoder, inputs_embeds, position_ids, cache)
        start = time.perf_counter()
        hidden = self._run(decoder, inputs_embeds, position_ids, cache)
        seconds = time.perf_counter() - start
        self.first = False
        if seconds > 1.0 and self.name not in compile_warmup_seconds:
            compile_warmup_seconds[self.name] = seconds
            logger.info(f"Compiled the {self.name} decode step in {seconds:.1f} s (once per model and setting)")
        return hidden

    def _run(self, *args):
        # The cache's filled length becomes a traced size only with this dynamo setting; it is read while tracing,
        # so it is set around each call rather than for the whole process (a plain attribute: cheap).
        config = torch._dynamo.config
        previous = config.capture_scalar_outputs
        config.capture_scalar_outputs = True
        try:
            return self.step_fn(*args)
        finally:
            config.capture_scalar_outputs = previous


__all__ = [
    "CompiledStepRunner",
    "append_and_attend",
    "compile_warmup_seconds",
    "compiled_decode_step",
    "compiled_decoding_applies",
    "static_decode_step",
]
