"""Audio and vision encoders against transformers' reference towers (same weights)."""

import pytest
import torch


@pytest.fixture(scope="module")
def towers(reference_thinker, our_thinker):
    return reference_thinker, our_thinker


@pytest.mark.parametrize("lengths", [[450, 200, 37], [400], [199, 1]])
def test_audio_encoder_matches_reference(towers, lengths):
    reference, ours = towers
    lengths = torch.tensor(lengths)
    features = torch.randn(128, int(lengths.sum()), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference.model.audio_tower(features, feature_lens=lengths).last_hidden_state
        got = ours.audio_tower(features, feature_lens=lengths).last_hidden_state
    assert got.shape == expected.shape == (int(ours.audio_tower.output_lengths(lengths).sum()), 64)
    assert expected.abs().mean() > 0.1
    assert (got - expected).abs().max() <= 1e-4


def test_audio_padded_layout_and_25_tokens_per_second(our_thinker):
    encoder = our_thinker.audio_tower
    features = torch.randn(2, 128, 300)
    mask = torch.zeros(2, 300, dtype=torch.long)
    mask[0, :300], mask[1, :100] = 1, 1
    with torch.no_grad():
        padded = encoder(features, feature_attention_mask=mask).last_hidden_state
        packed = encoder(torch.cat([features[0], features[1, :, :100]], dim=1), feature_lens=torch.tensor([300, 100]))
    assert padded.shape[0] == 75 + 25  # 3 s and 1 s of audio at 25 tokens per second
    torch.testing.assert_close(padded, packed.last_hidden_state)


def test_audio_chunks_are_independent(our_thinker):
    """Block-wise attention: the first 2 s chunk's tokens do not depend on later audio."""
    encoder = our_thinker.audio_tower
    features = torch.randn(128, 400)
    changed = features.clone()
    changed[:, 200:] = torch.randn(128, 200)
    with torch.no_grad():
        a = encoder(features).last_hidden_state
        b = encoder(changed).last_hidden_state
    torch.testing.assert_close(a[:50], b[:50])
    assert not torch.allclose(a[50:], b[50:])


def test_audio_encoder_rejects_bad_shapes(our_thinker):
    with pytest.raises(ValueError, match="128 mel bins"):
        our_thinker.audio_tower(torch.randn(80, 100))


@pytest.mark.parametrize("grids", [[[1, 22, 14]], [[4, 10, 12]], [[1, 22, 14], [4, 10, 12], [1, 4, 4]]])
def test_vision_encoder_matches_reference(towers, grids):
    reference, ours = towers
    grid = torch.tensor(grids)
    pixels = torch.randn(int(grid.prod(-1).sum()), 1176, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference.model.visual(pixels, grid_thw=grid).pooler_output
        got = ours.visual(pixels, grid_thw=grid).pooler_output
    assert got.shape == expected.shape == (int(grid.prod(-1).sum()) // 4, 64)
    assert (got - expected).abs().max() <= 1e-4


def test_vision_encoder_rejects_mismatched_grid(our_thinker):
    with pytest.raises(ValueError, match="describes 16 patches but pixel_values has 8"):
        our_thinker.visual(torch.randn(8, 1176), grid_thw=torch.tensor([[1, 4, 4]]))
    with pytest.raises(ValueError, match="must have shape"):
        our_thinker.visual(torch.randn(16, 100), grid_thw=torch.tensor([[1, 4, 4]]))


def test_eager_and_sdpa_agree(reference_full_dir):
    from omni_hf import OmniThinkerForConditionalGeneration

    eager = OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir, attn_implementation="eager").eval()
    sdpa = OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir, attn_implementation="sdpa").eval()
    grid = torch.tensor([[1, 22, 14]])
    pixels = torch.randn(308, 1176)
    features = torch.randn(128, 437)
    with torch.no_grad():
        torch.testing.assert_close(
            eager.visual(pixels, grid).pooler_output, sdpa.visual(pixels, grid).pooler_output, atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            eager.audio_tower(features).last_hidden_state,
            sdpa.audio_tower(features).last_hidden_state,
            atol=1e-4,
            rtol=1e-4,
        )
