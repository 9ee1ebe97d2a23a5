"""One decode step of many independent `StepDecoder`s as one batched forward (padded batched KV cache).

Each request keeps its own `DynamicCache` (prompt lengths, media and reply lengths differ). For a step, the caches
of the stepping requests are left-padded to the longest one and stacked into one `(batch, heads, longest, dim)`
cache per layer; the attention mask hides the padding, each row keeps its own 3-D TMRoPE position ids, and the new
key/value column of each row is appended back to that request's own cache. A request can therefore join or leave
the batch at any step (continuous batching), and its tokens are those of its single-request decode (greedy), since a
padded key contributes exactly zero to the softmax.
"""

import torch
from transformers.cache_utils import DynamicCache

from ..omni.decoding import StepDecoder


class BatchableDecoder(StepDecoder):
    """A `StepDecoder` whose decode steps can also be taken by `batched_step` (the prefill stays per request)."""


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """`(1, heads, n, dim)` → `(1, heads, length, dim)` with zeros in front."""
    missing = length - tensor.shape[2]
    if missing == 0:
        return tensor
    return torch.cat([tensor.new_zeros(*tensor.shape[:2], missing, tensor.shape[3]), tensor], dim=2)


@torch.no_grad()
def batched_step(model, decoders: list[BatchableDecoder], output_class) -> list[torch.Tensor]:
    """One decode step (not the prefill) of every decoder in one forward of `model`; returns each one's token `(1,)`.

    `output_class` (e.g. `OmniThinkerOutput`) wraps each row's slice of the outputs for
    `_update_model_kwargs_for_generation`, so every decoder's generation kwargs advance as in its own `step()`.
    Per-step inputs the model reads from its kwargs (the Talker's `thinker_reply_part`) must be set on each
    decoder's `model_kwargs` before the call.
    """
    if any(d.steps == 0 or d.finished for d in decoders):
        raise ValueError("batched_step takes decoders that have done their prefill and have not finished")
    prepared = [
        model.prepare_inputs_for_generation(d.sequences, next_sequence_length=1, **d.model_kwargs) for d in decoders
    ]
    caches = [p["cache"] for p in prepared]
    lengths = [cache.get_seq_length() for cache in caches]
    longest = max(lengths)
    layers = [
        (
            torch.cat([_pad_left(c.layers[i].keys, longest) for c in caches]),
            torch.cat([_pad_left(c.layers[i].values, longest) for c in caches]),
        )
        for i in range(len(caches[0].layers))
    ]
    batched = DynamicCache(ddp_cache_data=layers)
    mask = torch.zeros(len(decoders), longest + 1, dtype=torch.long, device=caches[0].layers[0].keys.device)
    for row, length in enumerate(lengths):
        mask[row, longest - length :] = 1
    inputs = {
        "input_ids": torch.cat([p["input_ids"] for p in prepared]),
        "position_ids": torch.cat([p["position_ids"] for p in prepared], dim=1),
        "attention_mask": mask,
        "cache": batched,
        "use_cache": True,
        "logits_to_keep": 1,
    }
    if "thinker_reply_part" in prepared[0]:
        inputs["thinker_reply_part"] = torch.cat([p["thinker_reply_part"][:, :1] for p in prepared])
    outputs = model(**inputs, return_dict=True)
    tokens = []
    for row, (decoder, cache) in enumerate(zip(decoders, caches)):
        for i, layer in enumerate(batched.layers):
            cache.update(layer.keys[row : row + 1, :, -1:], layer.values[row : row + 1, :, -1:], i)
        extra = {}
        if "thinker_reply_part" in inputs:
            extra["thinker_reply_part"] = inputs["thinker_reply_part"][row : row + 1]
        row_output = output_class(logits=outputs.logits[row : row + 1], cache=cache, **extra)
        decoder.model_kwargs = model._update_model_kwargs_for_generation(
            row_output, decoder.model_kwargs, is_encoder_decoder=False
        )
        logits = outputs.logits[row : row + 1, -1].to(copy=True, dtype=torch.float32, device=decoder.sequences.device)
        tokens.append(decoder.choose(logits))
    return tokens


__all__ = ["BatchableDecoder", "batched_step"]
