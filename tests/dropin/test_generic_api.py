"""The generic transformers API on the Thinker: standalone generation config, generate from `inputs_embeds` alone,
transformers' 4-row padding-free `position_ids`, `output_attentions`, `config.output_hidden_states`, `get_*_features`
output objects, beam search that keeps every prompt's media, and the raw-audio-without-rate rule."""

import logging

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import BaseModelOutputWithPooling

from omni_hf import OmniThinkerForConditionalGeneration
from omni_hf.testing.media import make_frames, make_image, make_waveform
from omni_hf.testing.tokenizer import build_tiny_processor

IM_END = 1002


class _ForceAt(LogitsProcessor):
    """Forces `token` at generation step `step` (counted from 0)."""

    def __init__(self, prompt_length: int, step: int, token: int):
        self.at, self.token = prompt_length + step, token

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == self.at:
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.token] = 0
        return scores


def _stops_at_im_end(thinker) -> bool:
    ids = torch.tensor([[5, 6, 7]])
    force = LogitsProcessorList([_ForceAt(3, 1, IM_END)])
    out = thinker.generate(input_ids=ids, max_new_tokens=8, do_sample=False, logits_processor=force)
    return out.shape[1] == 5 and int(out[0, -1]) == IM_END


def test_generation_config_stands_alone(tiny_omni_dir, reference_full_dir, tmp_path):
    from_full = OmniThinkerForConditionalGeneration.from_pretrained(tiny_omni_dir)  # our full folder
    from_official = OmniThinkerForConditionalGeneration.from_pretrained(reference_full_dir)  # official full folder
    for thinker in (from_full, from_official):
        assert thinker.generation_config.eos_token_id == IM_END and thinker.generation_config.pad_token_id == 1000
        assert _stops_at_im_end(thinker)
    from_full.save_pretrained(tmp_path / "alone")
    assert (tmp_path / "alone" / "generation_config.json").is_file()
    alone = OmniThinkerForConditionalGeneration.from_pretrained(tmp_path / "alone")
    assert alone.generation_config.eos_token_id == IM_END and _stops_at_im_end(alone)


def test_generate_from_inputs_embeds_alone(tiny_thinker):
    ids = torch.tensor([[5, 6, 7, 8, 9], [1000, 1000, 11, 12, 13]])
    mask = (ids != 1000).long()
    from_ids = tiny_thinker.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    embeds = tiny_thinker.get_input_embeddings()(ids)
    from_embeds = tiny_thinker.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(from_embeds, from_ids[:, ids.shape[1] :])


def _media_prompts(processor, kind: str, extra_first: bool = False) -> dict:
    """Two chat prompts, each with its own media item of `kind` (different sizes), batched and left-padded;
    `extra_first` gives the first prompt a second item (so media counts differ per prompt)."""
    if kind == "image":
        items = [
            {"type": "image", "image": make_image(112, 84, seed=1)},
            {"type": "image", "image": make_image(56, 84, 2)},
        ]
    elif kind == "video":
        items = [
            {"type": "video", "video": make_frames(4, 112, 84, seed=1)},
            {"type": "video", "video": make_frames(2, 56, 56, seed=2)},
        ]
    else:
        items = [
            {"type": "audio", "audio": (make_waveform(1.3, 16000, seed=1), 16000)},
            {"type": "audio", "audio": (make_waveform(0.7, 16000, seed=2), 16000)},
        ]
    contents = [[item, {"type": "text", "text": f"Q{i}"}] for i, item in enumerate(items)]
    if extra_first:
        contents[0].insert(0, items[1])
    conversations = [[{"role": "user", "content": content}] for content in contents]
    return dict(
        processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
    )


@pytest.mark.parametrize("kind", ["image", "video", "audio"])
def test_beam_search_keeps_each_prompts_media(tiny_thinker, kind):
    inputs = _media_prompts(build_tiny_processor(), kind, extra_first=True)
    with torch.no_grad():
        expected = tiny_thinker(**inputs).logits[:, -1]  # (2, vocab), unexpanded
    out = tiny_thinker.generate(
        **inputs, num_beams=3, max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True
    )
    first = out.logits[0].view(2, 3, -1)  # every beam of each prompt, first step
    for row in range(2):
        for beam in range(3):
            assert (first[row, beam] - expected[row]).abs().max() < 1e-4, (kind, row, beam)


def _packed_prompts(thinker):
    """Two prompts with media (image; audio), their separate inputs, and one packed padding-free row."""
    processor = build_tiny_processor()
    separate = []
    for kind in ("image", "audio"):
        both = _media_prompts(processor, kind)
        row = {k: v for k, v in both.items()}
        keep = both["attention_mask"][0].bool()
        row["input_ids"], row["attention_mask"] = both["input_ids"][:1, keep], both["attention_mask"][:1, keep]
        for key in ("pixel_values", "image_grid_thw", "input_features", "feature_attention_mask"):
            if key in row:
                first = row["image_grid_thw"][0].prod() if key == "pixel_values" else 1
                row[key] = row[key][: int(first)]
        separate.append(row)
    embeds, positions = [], []
    with torch.no_grad():
        for row in separate:
            media = {k: v for k, v in row.items() if k not in ("input_ids", "attention_mask")}
            embeds.append(thinker.embed_inputs(row["input_ids"], **media))
            tmrope, _ = thinker.get_rope_index(
                row["input_ids"],
                row["attention_mask"],
                row.get("image_grid_thw"),
                None,
                row.get("feature_attention_mask"),
            )
            text = torch.arange(row["input_ids"].shape[1])[None, None]
            positions.append(torch.cat([text, tmrope]))  # (4, 1, seq)
    return separate, torch.cat(embeds, dim=1), torch.cat(positions, dim=-1)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_four_row_position_ids(tiny_thinker, attn):
    tiny_thinker.set_attn_implementation(attn)
    try:
        separate, packed_embeds, packed_positions = _packed_prompts(tiny_thinker)
        with torch.no_grad():
            expected = torch.cat([tiny_thinker(**row).logits for row in separate], dim=1)
            packed = tiny_thinker(inputs_embeds=packed_embeds, position_ids=packed_positions).logits
    finally:
        tiny_thinker.set_attn_implementation("sdpa")
    assert packed.shape == expected.shape
    assert (packed - expected).abs().max() < 1e-4


def test_output_attentions_and_hidden_states(tiny_thinker):
    ids = torch.tensor([[5, 6, 7, 8]])
    layers = tiny_thinker.config.text_config.num_hidden_layers
    assert tiny_thinker(input_ids=ids, output_attentions=True).attentions is None  # sdpa: none (logged)
    tiny_thinker.set_attn_implementation("eager")
    try:
        out = tiny_thinker(input_ids=ids, output_attentions=True)
    finally:
        tiny_thinker.set_attn_implementation("sdpa")
    heads = tiny_thinker.config.text_config.num_attention_heads
    assert len(out.attentions) == layers and out.attentions[0].shape == (1, heads, 4, 4)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(1, heads, 4))
    assert torch.all(out.attentions[0].triu(1) == 0)  # causal
    assert tiny_thinker(input_ids=ids).hidden_states is None
    tiny_thinker.config.output_hidden_states = True
    try:
        out = tiny_thinker(input_ids=ids)
    finally:
        tiny_thinker.config.output_hidden_states = False
    assert len(out.hidden_states) == layers + 1 and out.hidden_states[0].shape == (1, 4, 64)


def test_get_features_return_output_objects(tiny_thinker):
    inputs = _media_prompts(build_tiny_processor(), "image")
    out = tiny_thinker.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], output_hidden_states=True)
    assert isinstance(out, BaseModelOutputWithPooling)
    tokens = int((inputs["input_ids"] == tiny_thinker.config.image_token_id).sum())
    assert out.pooler_output.shape == (tokens, 64)
    assert len(out.hidden_states) == len(tiny_thinker.visual.blocks) + 1
    as_tuple = tiny_thinker.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.last_hidden_state)
    audio = _media_prompts(build_tiny_processor(), "audio")
    out = tiny_thinker.get_audio_features(
        audio["input_features"], audio["feature_attention_mask"], output_hidden_states=True
    )
    assert out.last_hidden_state.shape == (int((audio["input_ids"] == 1003).sum()), 64)
    assert len(out.hidden_states) == len(tiny_thinker.audio_tower.layers) + 1
    video = _media_prompts(build_tiny_processor(), "video")
    out = tiny_thinker.get_video_features(video["pixel_values_videos"], video["video_grid_thw"])
    assert out.pooler_output.shape == (int((video["input_ids"] == 1010).sum()), 64) and out.hidden_states is None


def test_raw_audio_without_sampling_rate_is_named(caplog):
    processor = build_tiny_processor()
    wave = make_waveform(1.0, 16000).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        processor(text="<|audio_bos|><|AUDIO|><|audio_eos|>", audio=[wave])
    assert "audio[0] is a raw array without `sampling_rate`" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        processor(text="<|audio_bos|><|AUDIO|><|audio_eos|>", audio=[wave], sampling_rate=16000)
    assert "sampling_rate" not in caplog.text
