"""Attention restricted to segments of a packed sequence (audio chunks, vision frames and windows).

The reference loops over segments in Python and calls attention once per segment. Here all segments run in one
call: packed tokens are scattered into a padded batch `(num_segments, max_len)` with a key-padding mask built by
transformers' own `create_bidirectional_mask` (so sdpa, eager and flex get the mask format they expect), or, for
flash-attention, passed as a varlen batch with `cu_seqlens` and no padding at all.
"""

from collections.abc import Callable

import torch
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


def is_flash_attention(config) -> bool:
    return "flash" in (config._attn_implementation or "")


class SegmentLayout:
    """Where each token of a packed sequence of `num_segments` consecutive segments sits in a padded batch.

    Args:
        cu_seqlens: `(num_segments + 1,)` cumulative segment boundaries over the packed sequence.
    """

    def __init__(self, cu_seqlens: torch.Tensor):
        cu_seqlens = cu_seqlens.to(torch.long)
        lengths = cu_seqlens[1:] - cu_seqlens[:-1]
        keep = lengths > 0
        self.cu_seqlens = torch.cat([cu_seqlens[:1], cu_seqlens[1:][keep]]).to(torch.int32)
        self.lengths = lengths[keep]
        self.num_segments = int(self.lengths.numel())
        self.max_len = int(self.lengths.max()) if self.num_segments else 0
        slots = torch.arange(self.max_len, device=cu_seqlens.device)
        self.valid = slots.unsqueeze(0) < self.lengths.unsqueeze(1)  # (num_segments, max_len)
        self.flat_index = self.valid.flatten().nonzero().squeeze(-1)  # padded slot of each packed token
        self.total = int(self.lengths.sum())

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """`(total, *rest)` → `(num_segments, max_len, *rest)`, zeros in the padding."""
        out = packed.new_zeros((self.num_segments * self.max_len, *packed.shape[1:]))
        out.index_copy_(0, self.flat_index, packed)
        return out.view(self.num_segments, self.max_len, *packed.shape[1:])

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """`(num_segments, max_len, *rest)` → `(total, *rest)`."""
        return padded.reshape(self.num_segments * self.max_len, *padded.shape[2:]).index_select(0, self.flat_index)

    def attention_mask(self, config, like: torch.Tensor):
        """Key-padding mask in the format `config._attn_implementation` expects (None when nothing is padded)."""
        dummy = like.new_empty((self.num_segments, self.max_len, 1))
        return create_bidirectional_mask(config=config, inputs_embeds=dummy, attention_mask=self.valid)


def segment_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    layout: SegmentLayout,
    mask,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> torch.Tensor:
    """Bidirectional attention inside each segment.

    Args:
        query / key / value: `(total, heads, head_dim)` packed.
        layout: the segments; `mask` its `attention_mask(...)` (computed once per forward, reused by every layer).

    Returns:
        `(total, heads, head_dim)`.
    """
    config = module.config
    interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, _eager_bidirectional)
    if is_flash_attention(config):
        q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))
        out, _ = interface(
            module,
            q,
            k,
            v,
            attention_mask=None,
            scaling=scaling,
            dropout=dropout,
            is_causal=False,
            cu_seq_lens_q=layout.cu_seqlens,
            cu_seq_lens_k=layout.cu_seqlens,
            max_length_q=layout.max_len,
            max_length_k=layout.max_len,
            **kwargs,
        )
        return out.reshape(layout.total, *query.shape[1:])
    q, k, v = (layout.pad(t).transpose(1, 2) for t in (query, key, value))  # (segments, heads, max_len, dim)
    out, _ = interface(module, q, k, v, mask, scaling=scaling, dropout=dropout, is_causal=False, **kwargs)
    return layout.unpad(out)  # interface returns (segments, max_len, heads, dim)


def _eager_bidirectional(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights
