"""The Thinker collator: assistant-only labels at exact positions, padding of tokens and media, truncation rule,
packing (a packed row's loss equals the separate samples' losses)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from omni_hf.testing.media import espeak_speech, make_image  # noqa: E402
from omni_hf.testing.tokenizer import build_tiny_processor  # noqa: E402
from omni_hf.training.collator import (  # noqa: E402
    IGNORE_INDEX,
    OmniThinkerCollator,
    assistant_label_mask,
    encode_conversation,
    encode_text,
    pack_examples,
    truncate_example,
)
from omni_hf.training.run import packed_attention_masks  # noqa: E402

IM_START, IM_END = 1001, 1002


@pytest.fixture(scope="module")
def processor():
    return build_tiny_processor()


@pytest.fixture(scope="module")
def thinker():
    from omni_hf import OmniThinkerConfig, OmniThinkerForConditionalGeneration
    from omni_hf.testing import reinit_, tiny_thinker_config_dict
    from omni_hf.thinker.configuration_thinker import translate_official_thinker_config

    config = OmniThinkerConfig(**translate_official_thinker_config(tiny_thinker_config_dict()))
    return reinit_(OmniThinkerForConditionalGeneration(config)).eval()


def _dialogue(audio=None, image=None):
    blocks = [{"type": "text", "text": "What number?"}]
    if audio is not None:
        blocks.insert(0, {"type": "audio", "audio": audio[0], "sampling_rate": audio[1]})
    if image is not None:
        blocks.insert(0, {"type": "image", "image": image})
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": blocks},
        {"role": "assistant", "content": "three"},
        {"role": "user", "content": "And again?"},
        {"role": "assistant", "content": "Thank you"},
    ]


def test_label_mask_exact_positions():
    header = [IM_START, 7, 8]  # <|im_start|> assistant \n
    ids = torch.tensor([IM_START, 5, 8, 50, IM_END, 8, *header, 60, 61, IM_END, 8, *header, 70, IM_END, 8])
    mask = assistant_label_mask(ids, header, IM_END)
    assert mask.nonzero().flatten().tolist() == [9, 10, 11, 16, 17]
    cut = assistant_label_mask(ids[:11], header, IM_END)  # a turn cut off is labelled to the end
    assert cut.nonzero().flatten().tolist() == [9, 10]


def test_encode_conversation_labels_only_assistant_turns(processor):
    example = encode_conversation(processor, _dialogue(audio=espeak_speech("three"), image=make_image(56, 56)))
    tok = processor.tokenizer
    ids, labels = example["input_ids"], example["labels"]
    labelled = labels != IGNORE_INDEX
    assert torch.equal(labels[labelled], ids[labelled])
    text = tok.decode(ids[labelled])
    assert text == "three<|im_end|>Thank you<|im_end|>"
    # Exactly the tokens between each assistant header and its <|im_end|> (inclusive): nothing of system/user/media.
    starts = [i for i in range(len(ids) - 1) if ids[i] == IM_START and tok.decode(ids[i + 1]) == "assistant"]
    expected = torch.zeros_like(labelled)
    for s in starts:
        end = s + 3 + (ids[s + 3 :] == IM_END).nonzero()[0, 0]
        expected[s + 3 : end + 1] = True
    assert torch.equal(labelled, expected) and len(starts) == 2
    assert not labelled[ids == processor.audio_token_id].any() and not labelled[ids == processor.image_token_id].any()
    assert example["position_ids"].shape == (3, len(ids))
    assert example["input_features"].shape[:2] == (1, 128) and example["image_grid_thw"].tolist() == [[1, 4, 4]]


def test_collator_pads_tokens_and_media(processor, thinker):
    a = encode_conversation(processor, _dialogue(audio=espeak_speech("three")))
    b = encode_conversation(
        processor, _dialogue(audio=espeak_speech("seven, eight and nine"), image=make_image(56, 56))
    )
    c = encode_text(processor, "The quick brown fox.")
    batch = OmniThinkerCollator(processor.tokenizer.pad_token_id)([a, b, c])
    width = max(len(e["input_ids"]) for e in (a, b, c))
    assert batch["input_ids"].shape == (3, width) and batch["position_ids"].shape == (3, 3, width)
    assert batch["attention_mask"].sum(1).tolist() == [len(a["input_ids"]), len(b["input_ids"]), len(c["input_ids"])]
    assert (batch["labels"][0, len(a["input_ids"]) :] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0, len(a["input_ids"]) :] == processor.tokenizer.pad_token_id).all()
    frames = max(a["input_features"].shape[-1], b["input_features"].shape[-1])
    assert batch["input_features"].shape == (2, 128, frames)
    assert batch["feature_attention_mask"].sum(1).tolist() == [
        int(a["feature_attention_mask"].sum()),
        int(b["feature_attention_mask"].sum()),
    ]
    assert torch.equal(batch["labels"][2, : len(c["input_ids"])], c["input_ids"])  # a document: every token
    # The batch runs through the Thinker, and padding changes no sample's loss terms.
    out = thinker(**batch)
    assert torch.isfinite(out.loss)
    alone = OmniThinkerCollator(processor.tokenizer.pad_token_id)([a])
    n = len(a["input_ids"])
    torch.testing.assert_close(out.logits[0, :n], thinker(**alone).logits[0], atol=1e-4, rtol=1e-4)


def test_truncation_rule(processor):
    example = encode_conversation(processor, _dialogue(audio=espeak_speech("three")))
    n, media = len(example["input_ids"]), [processor.audio_token_id, processor.image_token_id]
    last_media = int((example["input_ids"] == processor.audio_token_id).nonzero().max())
    cut = truncate_example(example, n - 3, media)
    assert len(cut["input_ids"]) == n - 3 and cut["position_ids"].shape == (3, n - 3)
    assert truncate_example(example, last_media, media) is None  # the cut would split the audio: dropped
    assert truncate_example(example, n, media) is example


def test_packed_row_loss_equals_separate_losses(processor, thinker):
    a = encode_conversation(processor, _dialogue(audio=espeak_speech("three")))
    b = encode_conversation(processor, _dialogue(image=make_image(56, 56)))
    c = encode_text(processor, "Hello, world! How are you today?")
    packs = pack_examples([a, b, c], max_length=len(a["input_ids"]) + len(b["input_ids"]) + 1)
    assert len(packs) == 2 and packs[0]["packed_sequence_ids"].unique().tolist() == [0, 1]
    assert len(packs[0]["input_ids"]) == len(a["input_ids"]) + len(b["input_ids"])
    collator = OmniThinkerCollator(processor.tokenizer.pad_token_id)
    batch = collator([packs[0]])
    segments = batch.pop("packed_sequence_ids")
    batch["attention_mask"] = packed_attention_masks(thinker, batch, segments)
    with torch.no_grad():
        packed = thinker(**batch).logits[0]
        sep_a = thinker(**collator([a])).logits[0]
        sep_b = thinker(**collator([b])).logits[0]
    torch.testing.assert_close(packed, torch.cat([sep_a, sep_b]), atol=1e-4, rtol=1e-4)
    # Without the block mask the second sample would see the first: the logits differ.
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    with torch.no_grad():
        leaky = thinker(**batch).logits[0, len(a["input_ids"]) :]
    assert (leaky - sep_b).abs().max() > 1e-3
    assert packs[1]["labels"][0] == IGNORE_INDEX  # each sample's first label is masked
