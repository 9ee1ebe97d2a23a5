"""Exact greedy token choice over a large vocabulary without reading the full float32 output matrix every step.

On CPU a decode step of a small Thinker is dominated by its lm_head: 152k x 512 float32 weights (311 MB) streamed from
memory for one token. `ScreenedArgmaxHead` keeps an int8 per-row copy (packed for fbgemm's dynamic int8 linear,
a quarter of the bytes) and, for each row `r`, a rigorous bound on how far the int8 logit can be from the float32
one:

    |approx_r - exact_r| <= max_r ||W_r - Q_r||_2 ||h||_2 + max_r ||Q_r||_2 ||h - q(h)||_2 + slack

(Cauchy-Schwarz on the weight and the activation quantization errors; `slack` covers float rounding). Only rows
whose upper bound reaches the best lower bound can be the argmax; their exact float32 logits are computed from the
original weights and the argmax is taken among them. The chosen token is therefore the argmax of the float32
logits (the same choice as the full head, up to float summation order), typically after reading ~80 MB instead
of 311 MB. Logits processors that act elementwise and monotonically (token suppression, minimum length,
repetition penalty) are applied to both bounds, which keeps the argument exact; any other processor falls back to
the full head.
"""

import math
import warnings

import torch
from torch import nn
from transformers import (
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)


class MaskedSuppressTokens(SuppressTokensLogitsProcessor):
    """`SuppressTokensLogitsProcessor` with its vocabulary mask built once instead of on every step (the same
    scores: -inf at the suppressed tokens)."""

    def __init__(self, processor: SuppressTokensLogitsProcessor):
        self.suppress_tokens = processor.suppress_tokens
        self.mask = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.mask is None or self.mask.shape[-1] != scores.shape[-1] or self.mask.device != scores.device:
            vocabulary = torch.arange(scores.shape[-1], device=scores.device)
            self.mask = torch.isin(vocabulary, self.suppress_tokens.to(scores.device))
        return scores.masked_fill(self.mask, -math.inf)


def with_cached_masks(processors: LogitsProcessorList) -> LogitsProcessorList:
    """A copy of `processors` where token suppression keeps its mask between steps (same scores)."""
    return LogitsProcessorList(
        MaskedSuppressTokens(p) if type(p) is SuppressTokensLogitsProcessor else p for p in processors
    )


# Processors that map each score to a non-decreasing function of itself (or to -inf): bounds stay bounds.
MONOTONE_PROCESSORS = (
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)
MIN_SCREENED_WEIGHTS = 8 * 2**20  # below this many weights the plain float32 head is as fast


def screening_supported(head: nn.Linear) -> bool:
    """Whether `head` is a float32 CPU linear big enough to gain, and fbgemm's int8 kernels are available."""
    weight = head.weight
    return (
        type(weight.data) is torch.Tensor  # not a quantized tensor subclass (torchao, bitsandbytes)
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and weight.numel() >= MIN_SCREENED_WEIGHTS
        and torch.backends.quantized.engine in ("x86", "fbgemm")
        and hasattr(torch.ops.quantized, "linear_dynamic")
    )


def processors_are_monotone(processors: LogitsProcessorList) -> bool:
    return all(isinstance(p, MONOTONE_PROCESSORS) for p in processors)


class ScreenedArgmaxHead:
    """Greedy choice over `head`'s logits (see the module docstring). Build once per head; 1/4 of its memory.

    Args:
        head: the float32 `nn.Linear` (weight `(vocab, hidden)`, optional bias); read again only for candidates.
        max_candidates: above this many candidate rows the full head is used instead (still exact).
    """

    def __init__(self, head: nn.Linear, max_candidates: int = 4096):
        weight = head.weight.detach()
        self.head = head
        self.version = weight._version
        self.max_candidates = max_candidates
        self.hidden = weight.shape[1]
        # Everything in row blocks, so building costs little beyond the int8 copies: worst rows of each term, so
        # that a step needs one scalar bound (few full-vocabulary ops: on a busy machine every parallel op costs a
        # scheduling slice).
        integers = torch.empty(weight.shape, dtype=torch.int8)
        scale = torch.empty(weight.shape[0], dtype=torch.float64)
        self.weight_error = self.qweight_norm = self.abs_sum = 0.0
        for start in range(0, weight.shape[0], 2048):
            rows = slice(start, start + 2048)
            exact = weight[rows].double()
            scale[rows] = (exact.abs().amax(dim=1) / 127).clamp_min(1e-12)
            block = torch.round(exact / scale[rows, None]).clamp_(-127, 127)
            integers[rows] = block.to(torch.int8)
            dequant = block.mul_(scale[rows, None])
            self.weight_error = max(self.weight_error, float((exact - dequant).norm(dim=1).max()))
            self.qweight_norm = max(self.qweight_norm, float(dequant.norm(dim=1).max()))
            self.abs_sum = max(self.abs_sum, float(exact.abs().sum(dim=1).max()))
        with warnings.catch_warnings():  # quantized tensors are deprecated in torch; fbgemm's kernels still ship
            warnings.simplefilter("ignore", UserWarning)
            zero = torch.zeros_like(scale, dtype=torch.long)
            qweight = torch._make_per_channel_quantized_tensor(integers, scale, zero, 0)
            del integers  # (copied): at most two int8 copies exist at once
            self.packed = torch.ops.quantized.linear_prepack(qweight, None)
        del qweight

    def is_current(self, head: nn.Linear) -> bool:
        return head is self.head and head.weight._version == self.version

    @torch.no_grad()
    def approximate(self, hidden: torch.Tensor) -> tuple[torch.Tensor, float]:
        """int8 logits `(1, vocab)` of `hidden` `(1, hidden)` and a bound on their distance to the float32 ones."""
        hidden = hidden.float().contiguous()
        approx = torch.ops.quantized.linear_dynamic(hidden, self.packed, True)  # 7-bit activations: no saturation
        if self.head.bias is not None:
            approx = approx + self.head.bias
        # fbgemm quantizes the activations per tensor with these parameters; the actual error vector is known, and
        # a margin of a tenth plus half a step covers rounding differences.
        row = hidden[0]
        scale, zero_point = torch._choose_qparams_per_tensor(row, True)
        rounded = torch.clamp(torch.round(row / scale) + zero_point, 0, 127)
        act_error = float((row - (rounded - zero_point) * scale).norm()) * 1.1 + 0.5 * scale
        h_norm, h_max = float(row.norm()) * 1.0001, float(row.abs().max())
        bound = (
            self.weight_error * h_norm + self.qweight_norm * act_error + 1e-4 * self.abs_sum * (h_max + scale) + 1e-6
        )
        return approx, bound

    @torch.no_grad()
    def exact_logits(self, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Float32 logits `(batch, len(rows))` of the given vocabulary rows."""
        bias = None if self.head.bias is None else self.head.bias[rows]
        return nn.functional.linear(hidden.float(), self.head.weight[rows], bias)

    @torch.no_grad()
    def scores(self, hidden: torch.Tensor, sequences: torch.Tensor, processors: LogitsProcessorList):
        """Processed scores `(1, vocab)` that are exact on every row that can be the argmax and -inf elsewhere, or
        None when too many rows are candidates (then compute the full head). `hidden` `(1, hidden)`."""
        approx, bound = self.approximate(hidden)
        if len(processors):
            lower, upper = processors(sequences, approx - bound), processors(sequences, approx + bound)
            rows = (upper[0] >= lower[0].max()).nonzero().squeeze(1)
        else:
            rows = (approx[0] >= approx[0].max() - 2 * bound).nonzero().squeeze(1)
        if rows.numel() > self.max_candidates:
            return None
        scores = torch.full_like(approx, -math.inf)
        scores[0, rows] = self.exact_logits(hidden, rows)[0]
        return processors(sequences, scores) if len(processors) else scores


def screened_head(head: nn.Linear, cache_owner) -> ScreenedArgmaxHead | None:
    """The `ScreenedArgmaxHead` of `head`, built once and kept on `cache_owner` (rebuilt if the weights change),
    or None where screening does not apply."""
    if not screening_supported(head):
        return None
    cached = getattr(cache_owner, "_screened_head_cache", None)
    if cached is None or not cached.is_current(head):
        cached = ScreenedArgmaxHead(head)
        object.__setattr__(cache_owner, "_screened_head_cache", cached)
    return cached


__all__ = [
    "MaskedSuppressTokens",
    "ScreenedArgmaxHead",
    "with_cached_masks",
    "processors_are_monotone",
    "screened_head",
    "screening_supported",
]
