"""`ScreenedArgmaxHead`: its int8 bound always holds, and the token it picks is the float32 head's argmax."""

import pytest
import torch
from torch import nn
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor, SuppressTokensLogitsProcessor

from omni_hf.common.screened_head import ScreenedArgmaxHead, processors_are_monotone


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    layer = nn.Linear(256, 20000, bias=True)
    nn.init.normal_(layer.weight, std=0.05)
    nn.init.normal_(layer.bias, std=0.1)
    return layer


def hidden_states(n: int = 40):
    g = torch.Generator().manual_seed(1)
    for i in range(n):
        h = torch.randn(1, 256, generator=g) * (0.5 + 3 * torch.rand(1, generator=g))
        if i % 4 == 0:
            h[0, i % 256] *= 30  # an outlier channel, as trained models have
        yield h


def test_bound_holds_and_argmax_is_exact(head):
    screen = ScreenedArgmaxHead(head)
    no_processors = LogitsProcessorList()
    used = 0
    for h in hidden_states():
        approx, bound = screen.approximate(h)
        exact = head(h).detach()
        assert float((exact - approx).abs().max()) <= bound
        scores = screen.scores(h, torch.zeros(1, 1, dtype=torch.long), no_processors)
        if scores is not None:
            used += 1
            assert int(scores.argmax()) == int(exact.argmax())
            assert torch.isfinite(scores).sum() < 0.2 * exact.numel()  # it screened most rows out
            rows = torch.isfinite(scores)
            torch.testing.assert_close(scores[rows], exact[rows], rtol=1e-6, atol=1e-5)
    assert used >= 30


def test_monotone_processors_keep_the_choice_exact(head):
    screen = ScreenedArgmaxHead(head)
    for h in hidden_states(12):
        exact = head(h).detach()
        top = exact.topk(3).indices[0].tolist()
        history = torch.tensor([[top[0], 5, 7]])  # penalise the best token, suppress the second
        processors = LogitsProcessorList(
            [RepetitionPenaltyLogitsProcessor(4.0), SuppressTokensLogitsProcessor([top[1]], device="cpu")]
        )
        assert processors_are_monotone(processors)
        expected = processors(history, exact.clone())
        got = screen.scores(h, history, processors)
        assert got is not None and int(got.argmax()) == int(expected.argmax())


def test_too_many_candidates_falls_back(head):
    screen = ScreenedArgmaxHead(head, max_candidates=1)
    h = next(hidden_states(1))
    assert screen.scores(h, torch.zeros(1, 1, dtype=torch.long), LogitsProcessorList()) is None


def test_stale_weights_are_detected(head):
    from omni_hf.common.screened_head import screened_head

    class Owner:
        pass

    owner = Owner()
    layer = nn.Linear(64, 300, bias=False)
    import omni_hf.common.screened_head as module

    small = module.MIN_SCREENED_WEIGHTS
    module.MIN_SCREENED_WEIGHTS = 0
    try:
        first = screened_head(layer, owner)
        assert screened_head(layer, owner) is first
        with torch.no_grad():
            layer.weight.mul_(2)
        assert screened_head(layer, owner) is not first
    finally:
        module.MIN_SCREENED_WEIGHTS = small


def test_cached_suppression_mask_gives_the_same_scores():
    from omni_hf.common.screened_head import MaskedSuppressTokens, with_cached_masks

    plain = LogitsProcessorList([SuppressTokensLogitsProcessor([3, 7, 99], device="cpu")])
    cached = with_cached_masks(plain)
    assert isinstance(cached[0], MaskedSuppressTokens) and processors_are_monotone(cached)
    history = torch.zeros(1, 2, dtype=torch.long)
    for width in (100, 100, 120):  # the mask is rebuilt when the vocabulary width changes
        scores = torch.randn(1, width)
        assert torch.equal(cached(history, scores.clone()), plain(history, scores.clone()))


def test_static_cache_step_appends_attends_to_the_filled_part_and_rejects_a_full_cache():
    from types import SimpleNamespace

    from omni_hf.common.compiled_step import append_and_attend

    cached = SimpleNamespace(
        keys=torch.zeros(1, 2, 3, 8), values=torch.zeros(1, 2, 3, 8), cumulative_length=torch.tensor(0)
    )
    query, key = torch.randn(1, 4, 1, 8), torch.randn(1, 2, 1, 8)
    for filled in range(3):
        out = append_and_attend(query, key * (filled + 1), key * (filled + 1), cached, 0.5)
        # only the filled positions count: the result equals attention over them alone
        keys = cached.keys[:, :, : filled + 1]
        expected = torch.nn.functional.scaled_dot_product_attention(query, keys, keys, scale=0.5, enable_gqa=True)
        torch.testing.assert_close(out, expected)
        assert int(cached.cumulative_length) == filled + 1
    torch.testing.assert_close(cached.keys[:, :, 2:3], key * 3)
    with pytest.raises(RuntimeError, match="static cache is full"):
        append_and_attend(query, key, key, cached, 0.5)
