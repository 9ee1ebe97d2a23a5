"""OmniProcessor: parity with transformers' Qwen2_5OmniProcessor, chat template, TMRoPE ids, save/load, errors."""

import numpy as np
import pytest
import torch

from omni_hf.common.tmrope import get_rope_index
from omni_hf.processing import (
    DEFAULT_SYSTEM_PROMPT,
    OmniProcessor,
    load_audio,
    load_image,
    load_video,
    preprocess_videos,
)
from omni_hf.testing.media import make_frames, make_waveform

AUDIO = "<|audio_bos|><|AUDIO|><|audio_eos|>"
IMAGE = "<|vision_bos|><|IMAGE|><|vision_eos|>"
VIDEO = "<|vision_bos|><|VIDEO|><|vision_eos|>"


def _chat(processor, body: str) -> str:
    return processor.apply_chat_template([{"role": "user", "content": body}], add_generation_prompt=True)


def assert_audio_features_match(ours, ref):
    """Ours is padded to the longest clip; the reference pads to 300 s: equal on our frames, padding beyond."""
    frames = ours["feature_attention_mask"].shape[1]
    assert ref["feature_attention_mask"].shape[1] == 30000
    torch.testing.assert_close(ours["input_features"], ref["input_features"][..., :frames], atol=1e-6, rtol=0)
    torch.testing.assert_close(ours["feature_attention_mask"], ref["feature_attention_mask"][:, :frames])
    assert int(ref["feature_attention_mask"][:, frames:].sum()) == 0
    assert ours["feature_attention_mask"][:, -1].any()  # no wasted frame: the longest clip fills the last one


def test_text_only_batch_matches_reference(processor, reference):
    texts = [_chat(processor, "Hello, world!"), _chat(processor, "What time is it? It is about three o'clock.")]
    ours = processor(text=texts, return_tensors="pt")
    ref = reference()(text=texts, padding=True, return_tensors="pt")
    torch.testing.assert_close(ours["input_ids"], ref["input_ids"])
    torch.testing.assert_close(ours["attention_mask"], ref["attention_mask"])
    assert ours["attention_mask"][0, 0] == 0  # left padding by default, like the reference


def test_audio_batch_matches_reference(processor, reference, media):
    clips = [load_audio(media["wav"]), load_audio(media["wav_44k_stereo"]), load_audio(media["wav_short"])]
    texts = [_chat(processor, AUDIO + AUDIO + "Which is louder?"), _chat(processor, AUDIO + "Transcribe.")]
    ours = processor(text=texts, audio=clips, return_tensors="pt")
    ref = reference()(text=texts, audio=clips, padding=True, return_tensors="pt")
    torch.testing.assert_close(ours["input_ids"], ref["input_ids"])
    torch.testing.assert_close(ours["attention_mask"], ref["attention_mask"])
    assert ours["input_features"].shape == (3, 128, 150)  # 1.5 s = 150 mel frames, not 30000
    assert_audio_features_match(ours, ref)
    assert (ours["input_ids"] == processor.audio_token_id).sum() == 37 + 25 + 17  # 25 tokens per second
    # The reference layout is still available.
    full = processor(text=texts, audio=clips, audio_padding="max_length", return_tensors="pt")
    torch.testing.assert_close(full["input_features"], ref["input_features"], atol=1e-6, rtol=0)


def test_images_and_audio_match_reference(processor, reference, media):
    images = [load_image(media["png"]), load_image(media["png_small"])]
    audio = [load_audio(media["flac"])]
    texts = [_chat(processor, IMAGE + AUDIO + "Describe both."), _chat(processor, "Picture: " + IMAGE)]
    ours = processor(text=texts, images=images, audio=audio, return_tensors="pt")
    ref = reference()(text=texts, images=images, audio=audio, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "image_grid_thw"):
        torch.testing.assert_close(ours[key], ref[key])
    torch.testing.assert_close(ours["pixel_values"], ref["pixel_values"], atol=1e-6, rtol=0)
    assert_audio_features_match(ours, ref)


def _video_reference(processor, reference, clips):
    outputs = preprocess_videos([c.frames for c in clips], processor.image_processor)
    return reference({k: torch.from_numpy(v) for k, v in outputs.items()})


def test_videos_match_reference(processor, reference, media):
    clips = [load_video(media["video"]), load_video(media["video_long"])]
    texts = [_chat(processor, VIDEO + "What happens?"), _chat(processor, IMAGE + VIDEO)]
    image = load_image(media["png"])
    ours = processor(text=texts, images=[image], videos=clips, return_tensors="pt")
    ref = _video_reference(processor, reference, clips)(
        text=texts, images=[image], videos=[c.frames for c in clips], padding=True, return_tensors="pt"
    )
    for key in ("input_ids", "attention_mask", "video_grid_thw", "image_grid_thw"):
        torch.testing.assert_close(ours[key], ref[key])
    torch.testing.assert_close(ours["video_second_per_grid"], ref["video_second_per_grid"].float())
    assert ours["video_second_per_grid"].tolist() == [1.0, 1.0]  # temporal patch 2 / 2 fps


def test_audio_in_video_matches_reference(processor, reference, media):
    """Each video's track takes the audio slot where the video appears, standalone clips fill <|AUDIO|> slots."""
    clips = [load_video(media["video"], with_audio=True), load_video(media["video_long"], with_audio=True)]
    standalone = [load_audio(media["wav"]), load_audio(media["ogg"])]
    texts = [_chat(processor, VIDEO + AUDIO + "Compare."), _chat(processor, AUDIO + "and" + VIDEO)]
    ours = processor(text=texts, videos=clips, audio=standalone, use_audio_in_video=True, return_tensors="pt")
    slots = [clips[0].audio, standalone[0], standalone[1], clips[1].audio]
    ref = _video_reference(processor, reference, clips)(
        text=texts,
        videos=[c.frames for c in clips],
        audio=slots,
        audio_from_video_indices=[0, None, None, 1],
        load_audio_from_video=True,
        padding=True,
        return_tensors="pt",
    )
    for key in ("input_ids", "attention_mask", "video_grid_thw"):
        torch.testing.assert_close(ours[key], ref[key])
    assert_audio_features_match(ours, ref)
    row = ours["input_ids"][0].tolist()
    start = row.index(processor.vision_bos_token_id)
    assert (
        row[start + 1] == processor.audio_bos_token_id
    )  # <|vision_bos|><|audio_bos|> ... <|audio_eos|><|vision_eos|>
    end = row.index(processor.vision_eos_token_id)
    assert row[end - 1] == processor.audio_eos_token_id
    assert set(row[start + 2 : end - 1]) == {processor.audio_token_id, processor.video_token_id}


def test_audio_in_video_groups_by_time_at_low_fps(processor, media):
    """At 0.5 fps a temporal patch spans 4 s (two 2 s chunks): chunks without frames hold audio only. (The
    reference's chunk splitter drifts by one token per skipped chunk there; we follow `tmrope`'s time grouping.)"""
    clip = load_video(media["video_8s"], fps=0.5, with_audio=True)
    assert clip.num_frames == 4 and clip.fps == pytest.approx(0.5)
    out = processor(text=VIDEO, videos=[clip], use_audio_in_video=True, return_tensors="pt", return_position_ids=True)
    ids = out["input_ids"][0]
    per_frame = int(out["video_grid_thw"][0].prod()) // 4 // int(out["video_grid_thw"][0, 0])
    n_audio = int((ids == processor.audio_token_id).sum())
    kinds = ids[2:-2]
    expected = [processor.video_token_id] * per_frame + [processor.audio_token_id] * min(100, n_audio)
    assert kinds[: len(expected)].tolist() == expected  # frame 0, then 4 s of audio (chunks 0 and 1)


def test_chat_template_matches_reference(processor, reference, media):
    conversation = [
        {"role": "system", "content": [{"type": "text", "text": DEFAULT_SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [
                {"type": "audio", "audio": media["wav"]},
                {"type": "image", "image": media["png"]},
                {"type": "video", "video": media["video"]},
                {"type": "text", "text": "What do you see and hear?"},
            ],
        },
        {"role": "assistant", "content": "A box moving and some tones."},
        {"role": "user", "content": "Thanks!"},
    ]
    ours = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert ours == reference().apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert ours.count(AUDIO) == ours.count(IMAGE) == ours.count(VIDEO) == 1
    # Without a system message, ours inserts the speech-capable default system prompt (the template's own is
    # "You are a helpful assistant.", which the official model card says disables speech output).
    no_system = conversation[1:]
    assert processor.apply_chat_template(no_system, add_generation_prompt=True) == ours
    plain = processor.apply_chat_template(no_system, add_default_system_prompt=False)
    assert plain == reference().apply_chat_template(no_system, tokenize=False)
    assert "You are a helpful assistant." in plain


def test_apply_chat_template_tokenizes_and_loads_media(processor, media):
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "audio", "audio": media["wav_8k"]},
                {"type": "image", "image": media["png"]},
                {"type": "audio", "audio": make_waveform(0.5, 8000), "sampling_rate": 8000},
                {"type": "video", "path": media["video"]},
                {"type": "text", "text": "Describe."},
            ],
        }
    ]
    out = processor.apply_chat_template(
        conversation,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        use_audio_in_video=True,
    )
    text = processor.apply_chat_template(conversation, add_generation_prompt=True)
    direct = processor(
        text=text,
        images=[media["png"]],
        videos=[media["video"]],
        audio=[media["wav_8k"], (make_waveform(0.5, 8000), 8000)],
        use_audio_in_video=True,
        return_tensors="pt",
    )
    assert sorted(out) == sorted(direct)
    for key in out:
        torch.testing.assert_close(out[key], direct[key])
    assert out["input_features"].shape[0] == 3  # two clips + the video's track
    ids = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, use_audio_in_video=True
    )
    assert ids == direct["input_ids"].tolist()
    batch = processor.apply_chat_template(
        [conversation, [{"role": "user", "content": "Hi"}]], tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"][1, 0] == 0


def test_position_ids_equal_get_rope_index(processor, media):
    clip = load_video(media["video"], with_audio=True)
    texts = [_chat(processor, AUDIO + VIDEO + IMAGE + "Go."), _chat(processor, "Only text.")]
    out = processor(
        text=texts,
        images=[media["png"]],
        videos=[clip],
        audio=[media["wav"]],
        use_audio_in_video=True,
        return_tensors="pt",
        return_position_ids=True,
    )
    expected, deltas = get_rope_index(
        out["input_ids"],
        processor.rope_tokens,
        attention_mask=out["attention_mask"],
        image_grid_thw=out["image_grid_thw"],
        video_grid_thw=out["video_grid_thw"],
        audio_feature_lengths=out["feature_attention_mask"].sum(-1),
        video_second_per_grid=out["video_second_per_grid"],
        use_audio_in_video=True,
    )
    assert out["position_ids"].shape == (3, 2, out["input_ids"].shape[1]) and out["rope_deltas"].shape == (2, 1)
    torch.testing.assert_close(out["position_ids"], expected)
    torch.testing.assert_close(out["rope_deltas"], deltas)
    assert out["rope_deltas"][1, 0] == 0  # text-only row: positions are 0..n-1


def test_save_and_load_round_trip(processor, media, tmp_path):
    custom = OmniProcessor(tokenizer=processor.tokenizer, fps=1.0, max_length=4096, default_system_prompt="Be brief.")
    custom.save_pretrained(tmp_path)
    assert (tmp_path / "chat_template.jinja").read_text() == custom.chat_template
    loaded = OmniProcessor.from_pretrained(tmp_path)
    assert (loaded.fps, loaded.max_length, loaded.default_system_prompt) == (1.0, 4096, "Be brief.")
    assert loaded.chat_template == custom.chat_template
    assert loaded.image_processor.to_dict() == custom.image_processor.to_dict()
    assert loaded.feature_extractor.to_dict() == custom.feature_extractor.to_dict()
    conversation = [
        {
            "role": "user",
            "content": [{"type": "audio", "audio": media["wav"]}, {"type": "video", "video": media["video"]}],
        }
    ]
    a = custom.apply_chat_template(conversation, tokenize=True, return_dict=True, return_tensors="pt")
    b = loaded.apply_chat_template(conversation, tokenize=True, return_dict=True, return_tensors="pt")
    assert sorted(a) == sorted(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_decode_passes_through_to_the_tokenizer(processor):
    ids = processor(text=["Hello, world!", "Good night"], return_tensors="pt")["input_ids"]
    assert processor.batch_decode(ids, skip_special_tokens=True) == ["Hello, world!", "Good night"]
    assert processor.decode(ids[0]) == processor.tokenizer.decode(ids[0])
    assert processor.post_process_image_text_to_text(ids) == ["Hello, world!", "Good night"]


def test_placeholder_count_errors(processor, media):
    image = load_image(media["png"])
    with pytest.raises(ValueError, match=r"contain 2 <\|IMAGE\|> placeholder\(s\) but 1 images were given"):
        processor(text=IMAGE + IMAGE, images=[image])
    with pytest.raises(ValueError, match=r"contain 0 <\|IMAGE\|> placeholder\(s\) but 1 images were given"):
        processor(text="no placeholder", images=image)
    with pytest.raises(ValueError, match=r"contain 1 <\|AUDIO\|> placeholder\(s\) but 2 audio clips were given"):
        processor(text=AUDIO, audio=[make_waveform(0.5), make_waveform(0.5)])
    with pytest.raises(ValueError, match=r"contain 1 <\|VIDEO\|> placeholder\(s\) but 0 videos were given"):
        processor(text=VIDEO)


def test_other_errors(processor, media):
    with pytest.raises(ValueError, match="needs `text`"):
        processor(images=[media["png"]])
    with pytest.raises(ValueError, match=r"Prompt #1 has \d+ tokens after media expansion, more than max_length=20"):
        processor(text=["short", AUDIO], audio=[make_waveform(1.0)], max_length=20)
    with pytest.raises(ValueError, match=r"silent\.mp4' has no audio track, but its audio was requested"):
        processor(text=VIDEO, videos=[media["video_silent"]], use_audio_in_video=True)
    with pytest.raises(ValueError, match=r"Video #0 \(<array>\) has no audio track, but use_audio_in_video=True"):
        processor(text=VIDEO, videos=[make_frames(4, 56, 56)], use_audio_in_video=True)
    with pytest.raises(ValueError, match="too small to patch"):
        processor(text=IMAGE, images=[np.zeros((10, 10, 3), np.uint8)])
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        processor(text=AUDIO, audio=[str(media["root"] / "missing.wav")])
    with pytest.raises(TypeError, match="unexpected keyword arguments: \\['bogus'\\]"):
        processor(text="hi", bogus=1)
    with pytest.raises(ValueError, match="Remote image URLs are not supported"):
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image", "url": "https://x/y.png"}]}], tokenize=True
        )


def test_frame_arrays_use_the_given_fps(processor):
    frames = make_frames(6, 84, 56)
    out = processor(text=VIDEO, videos=[frames], fps=4.0, return_tensors="pt")
    assert out["video_grid_thw"][0, 0] == 3 and out["video_second_per_grid"].tolist() == [0.5]


def test_nested_media_lists_and_right_padding(processor, media):
    texts = [IMAGE + AUDIO + "First.", "Second, longer prompt with " + IMAGE + AUDIO]
    audio = [make_waveform(0.5), (make_waveform(1.0, 44100), 44100)]
    flat = processor(text=texts, images=[media["png"], media["png_small"]], audio=audio, return_tensors="pt")
    nested = processor(
        text=texts, images=[[media["png"]], [media["png_small"]]], audio=[[audio[0]], [audio[1]]], return_tensors="pt"
    )
    for key in flat:
        torch.testing.assert_close(flat[key], nested[key])
    right = processor(
        text=texts, images=[media["png"], media["png_small"]], audio=audio, padding_side="right", return_tensors="pt"
    )
    for row in range(2):
        n = int(flat["attention_mask"][row].sum())
        assert right["input_ids"][row, :n].tolist() == flat["input_ids"][row, -n:].tolist()
        assert right["attention_mask"][row, :n].all() and not right["attention_mask"][row, n:].any()
