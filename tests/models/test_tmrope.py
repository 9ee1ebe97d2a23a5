"""TMRoPE position ids against transformers' `get_rope_index`, every branch."""

import pytest
import torch

from omni_hf.common.tmrope import TMRoPETokens, audio_token_lengths, get_rope_index, interleave_video_audio
from omni_hf.testing import TINY_TOKEN_IDS as TOKENS


@pytest.fixture(scope="module")
def rope_tokens(tiny_config_dict):
    from omni_hf import OmniThinkerConfig

    return TMRoPETokens.from_config(OmniThinkerConfig.from_dict(tiny_config_dict))


def _ref(reference_thinker, **kw):
    return reference_thinker.model.get_rope_index(
        kw["input_ids"],
        kw.get("image_grid_thw"),
        kw.get("video_grid_thw"),
        kw["attention_mask"],
        kw["use_audio_in_video"],
        kw["feature_attention_mask"].sum(-1),
        kw.get("video_second_per_grid"),
    )


def _ours(rope_tokens, **kw):
    return get_rope_index(
        kw["input_ids"],
        rope_tokens,
        attention_mask=kw["attention_mask"],
        image_grid_thw=kw.get("image_grid_thw"),
        video_grid_thw=kw.get("video_grid_thw"),
        audio_feature_lengths=kw["feature_attention_mask"].sum(-1),
        video_second_per_grid=kw.get("video_second_per_grid"),
        use_audio_in_video=kw["use_audio_in_video"],
    )


@pytest.mark.parametrize("use_audio_in_video", [False, True])
def test_mixed_prompt_matches_reference(reference_thinker, rope_tokens, make_mixed_prompt, use_audio_in_video):
    inputs = make_mixed_prompt(TOKENS, rope_tokens, use_audio_in_video)
    ref_pos, ref_delta = _ref(reference_thinker, **inputs)
    pos, delta = _ours(rope_tokens, **inputs)
    assert torch.equal(pos, ref_pos)
    assert torch.equal(delta, ref_delta)


def test_layout_of_video_with_audio(rope_tokens, make_mixed_prompt):
    inputs = make_mixed_prompt(TOKENS, rope_tokens, True)
    ids, (pos, _) = inputs["input_ids"][0], _ours(rope_tokens, **inputs)
    start = (ids == TOKENS["audio_bos"]).nonzero().flatten()[1]  # the video's <|audio_bos|>
    assert ids[start - 1] == TOKENS["vision_bos"]
    assert torch.equal(pos[:, 0, start], pos[:, 0, start - 1])  # paired start tokens share a position
    video = (ids == TOKENS["video"]).nonzero().flatten()
    audio_in_video = (ids == TOKENS["audio"]).nonzero().flatten()
    audio_in_video = audio_in_video[audio_in_video > start]
    # 1 temporal id = 40 ms: 1 s per temporal patch = 25 ids; the clip's audio advances 1 per token.
    assert sorted(set(pos[0, 0, video].tolist())) == [pos[0, 0, start].item() + 1 + 25 * k for k in range(4)]
    assert torch.equal(pos[0, 0, audio_in_video] - pos[0, 0, audio_in_video[0]], torch.arange(len(audio_in_video)))
    # vision before audio within the first 2 s chunk
    assert video[0] < audio_in_video[0]


@pytest.mark.parametrize("side", ["left", "right"])
def test_batch_with_padding_matches_reference(reference_thinker, rope_tokens, make_mixed_prompt, side):
    first = make_mixed_prompt(TOKENS, rope_tokens, True)
    n_audio = audio_token_lengths(torch.tensor([300])).item()
    second = [5, TOKENS["audio_bos"], *[TOKENS["audio"]] * n_audio, TOKENS["audio_eos"], 7]
    length = first["input_ids"].shape[1]
    pad = [TOKENS["pad"]] * (length - len(second))
    row = pad + second if side == "left" else second + pad
    mask = [0] * len(pad) + [1] * len(second) if side == "left" else [1] * len(second) + [0] * len(pad)
    lengths = torch.cat([first["feature_attention_mask"].sum(-1), torch.tensor([300])])
    inputs = dict(first)
    inputs["input_ids"] = torch.cat([first["input_ids"], torch.tensor([row])])
    inputs["attention_mask"] = torch.cat([first["attention_mask"], torch.tensor([mask])])
    inputs["feature_attention_mask"] = (torch.arange(400) < lengths[:, None]).long()
    ref_pos, ref_delta = _ref(reference_thinker, **inputs)
    pos, delta = _ours(rope_tokens, **inputs)
    assert torch.equal(pos, ref_pos)
    assert torch.equal(delta, ref_delta)


def test_text_only_is_sequential(rope_tokens):
    ids = torch.tensor([[1, 2, 3, 4], [TOKENS["pad"], TOKENS["pad"], 5, 6]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    pos, delta = get_rope_index(ids, rope_tokens, attention_mask=mask)
    assert pos[:, 0].tolist() == [[0, 1, 2, 3]] * 3
    assert pos[:, 1].tolist() == [[1, 1, 0, 1]] * 3
    assert delta.tolist() == [[0], [0]]


def test_interleave_orders_vision_before_audio_per_chunk(rope_tokens):
    # 4 temporal patches at 1 s each (25 ids), 2x2 merged tokens per frame, 4 s of audio (100 tokens).
    order = interleave_video_audio(torch.tensor([4, 4, 4]), 1.0, 100, rope_tokens).long().tolist()
    assert order == [0] * 8 + [1] * 50 + [0] * 8 + [1] * 50


def test_errors_name_the_problem(rope_tokens):
    ids = torch.tensor([[TOKENS["audio_bos"], *[TOKENS["audio"]] * 5, TOKENS["audio_eos"]]])
    with pytest.raises(ValueError, match="audio #0 needs 50 placeholder tokens but the prompt has 5"):
        get_rope_index(ids, rope_tokens, audio_feature_lengths=torch.tensor([200]))
    with pytest.raises(ValueError, match="more audio placeholders than audio inputs"):
        get_rope_index(ids, rope_tokens)
    with pytest.raises(ValueError, match="More media than placeholders"):
        get_rope_index(torch.tensor([[1, 2]]), rope_tokens, image_grid_thw=torch.tensor([[1, 4, 4]]))
    video = torch.tensor([[TOKENS["vision_bos"], *[TOKENS["video"]] * 8, TOKENS["vision_eos"]]])
    with pytest.raises(ValueError, match="audio \\(in video\\)"):
        get_rope_index(video, rope_tokens, video_grid_thw=torch.tensor([[2, 4, 4]]), use_audio_in_video=True)
