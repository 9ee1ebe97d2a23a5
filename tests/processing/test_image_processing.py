"""Image/video patching: exact parity with transformers' Qwen2-VL image processor, and the video patch layout."""

import numpy as np
import pytest
from transformers import Qwen2VLImageProcessorPil

from omni_hf.processing import (
    IMAGE_MAX_PIXELS,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    OmniProcessor,
    default_image_processor,
    patchify,
    preprocess_video,
    preprocess_videos,
    smart_resize,
)
from omni_hf.testing.media import make_frames, make_image


@pytest.fixture(scope="module")
def transformers_image_processor():
    """A fresh transformers processor with the official Qwen2.5-Omni preprocessor_config values."""
    return Qwen2VLImageProcessorPil(
        min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2
    )


@pytest.mark.parametrize("size", [(224, 168), (60, 40), (333, 517), (28, 28)])
def test_images_match_transformers(processor, transformers_image_processor, size):
    image = make_image(*size, seed=sum(size))
    prompt = "<|vision_bos|><|IMAGE|><|vision_eos|>"
    ours = processor(text=prompt, images=[image], return_tensors="np")
    ref = transformers_image_processor(images=[image], return_tensors="np")
    assert ours["pixel_values"].dtype == np.float32 and ours["pixel_values"].shape[1] == 3 * 2 * 14 * 14
    np.testing.assert_array_equal(ours["image_grid_thw"], ref["image_grid_thw"])
    np.testing.assert_allclose(ours["pixel_values"], ref["pixel_values"], atol=1e-6, rtol=0)
    assert len(ours["input_ids"][0]) == 2 + int(np.prod(ref["image_grid_thw"][0])) // 4


def test_large_images_are_resized_down_to_max_pixels(processor):
    assert processor.image_processor.size["longest_edge"] == IMAGE_MAX_PIXELS
    # Same mechanism with a lower cap, so the test stays fast: 1000x700 → at most 256*28*28 pixels.
    small_cap = OmniProcessor(
        tokenizer=processor.tokenizer, image_processor=default_image_processor(max_pixels=256 * 28 * 28)
    )
    out = small_cap(text="<|IMAGE|>", images=make_image(1000, 700), return_tensors="np")
    t, h, w = out["image_grid_thw"][0]
    assert t == 1 and h * w * 14 * 14 <= 256 * 28 * 28 and h % 2 == 0 and w % 2 == 0
    assert (
        (h * 14, w * 14) == smart_resize(700, 1000, factor=28, min_pixels=3136, max_pixels=256 * 28 * 28) == (364, 532)
    )


def _loop_patchify(frames, p=14, tp=2, m=2):
    """Independent, loop-based statement of the Qwen2-VL video layout (time, merge window, patch in window)."""
    t, c, h, w = frames.shape
    rows = []
    for ti in range(t // tp):
        for bh in range(h // p // m):
            for bw in range(w // p // m):
                for mh in range(m):
                    for mw in range(m):
                        y, x = (bh * m + mh) * p, (bw * m + mw) * p
                        rows.append(
                            frames[ti * tp : (ti + 1) * tp, :, y : y + p, x : x + p].transpose(1, 0, 2, 3).ravel()
                        )
    return np.stack(rows)


def test_patchify_layout_matches_a_loop(rng):
    frames = rng.standard_normal((4, 3, 56, 84)).astype(np.float32)
    patches, grid = patchify(frames)
    assert grid == (2, 4, 6)
    np.testing.assert_array_equal(patches, _loop_patchify(frames))


def test_video_of_equal_frames_equals_image_patches(transformers_image_processor):
    frame = np.asarray(make_image(150, 100))
    patches, grid = preprocess_video(np.stack([frame, frame]), transformers_image_processor)
    ref = transformers_image_processor(
        images=[frame], size={"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS}, return_tensors="np"
    )
    assert list(grid) == ref["image_grid_thw"][0].tolist()
    np.testing.assert_array_equal(patches, ref["pixel_values"])


def test_each_video_frame_is_processed_like_an_image(transformers_image_processor):
    """Per frame (resize, rescale, normalise), the vectorised video path is bit-identical to the image processor."""
    frames = make_frames(4, 112, 84)
    patches, (gt, gh, gw) = preprocess_video(frames, transformers_image_processor)
    per_frame = patches.reshape(gt, gh * gw, 3, 2, 14 * 14)
    size = {"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS}
    for i in range(4):
        ref = transformers_image_processor(images=[frames[i]], size=size, return_tensors="np")["pixel_values"]
        ref = ref.reshape(gh * gw, 3, 2, 14 * 14)[:, :, 0]
        np.testing.assert_array_equal(per_frame[i // 2, :, :, i % 2], ref)


def test_odd_frame_counts_repeat_the_last_frame():
    ip = default_image_processor()
    frames = make_frames(3, 56, 56)
    odd, grid = preprocess_video(frames, ip)
    even, _ = preprocess_video(np.concatenate([frames, frames[-1:]]), ip)
    assert grid[0] == 2
    np.testing.assert_array_equal(odd, even)


def test_preprocess_videos_concatenates(rng):
    ip = default_image_processor()
    out = preprocess_videos([make_frames(4, 112, 84), make_frames(2, 84, 56, seed=1)], ip)
    grids = out["video_grid_thw"]
    assert grids.dtype == np.int64 and grids.shape == (2, 3)
    assert out["pixel_values_videos"].shape == (int(grids.prod(-1).sum()), 1176)
    # Video frames are upscaled to at least 128*28*28 pixels and stay within 768*28*28.
    assert all(VIDEO_MIN_PIXELS <= h * w * 196 <= VIDEO_MAX_PIXELS for _, h, w in grids)
