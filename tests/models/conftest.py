"""A mixed text + audio + image + video(+its audio) prompt built directly from ids (no processor needed)."""

import torch

from omni_hf.common.tmrope import TMRoPETokens, audio_token_lengths, interleave_video_audio


def mixed_prompt(tokens: dict, rope_tokens: TMRoPETokens, use_audio_in_video: bool = True, seed: int = 0) -> dict:
    """Model inputs for: text, an audio clip (4 s), an image (8x12 patches), a video (4 frames of 6x8 patches)
    with its audio track (1.5 s) when `use_audio_in_video`, then more text."""
    generator = torch.Generator().manual_seed(seed)
    frames = [400, 150] if use_audio_in_video else [400]
    n_audio = audio_token_lengths(torch.tensor(frames)).tolist()
    image_grid = torch.tensor([[1, 8, 12]])
    video_grid = torch.tensor([[4, 6, 8]])
    second_per_grid = torch.tensor([1.0])
    ids = [5, 6, 7, tokens["audio_bos"], *[tokens["audio"]] * n_audio[0], tokens["audio_eos"], 8]
    ids += [tokens["vision_bos"], *[tokens["image"]] * 24, tokens["vision_eos"], 9]
    if use_audio_in_video:
        order = interleave_video_audio(video_grid[0], second_per_grid[0], n_audio[1], rope_tokens)
        body = [tokens["audio"] if a else tokens["video"] for a in order.tolist()]
        ids += [tokens["vision_bos"], tokens["audio_bos"], *body, tokens["audio_eos"], tokens["vision_eos"]]
    else:
        ids += [tokens["vision_bos"], *[tokens["video"]] * 48, tokens["vision_eos"]]
    ids += [10, 11]
    features = torch.randn(len(frames), 128, max(frames), generator=generator)
    feature_mask = (torch.arange(max(frames)) < torch.tensor(frames)[:, None]).long()
    return {
        "input_ids": torch.tensor([ids]),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
        "input_features": features,
        "feature_attention_mask": feature_mask,
        "pixel_values": torch.randn(96, 1176, generator=generator),
        "image_grid_thw": image_grid,
        "pixel_values_videos": torch.randn(192, 1176, generator=generator),
        "video_grid_thw": video_grid,
        "video_second_per_grid": second_per_grid,
        "use_audio_in_video": use_audio_in_video,
    }


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def make_mixed_prompt():
    return mixed_prompt
