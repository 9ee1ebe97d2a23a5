"""Teacher-forced Talker examples reproduce what the Talker sees in generation: for a text prompt and for a prompt
with audio and an image, the example's greedy codes (argmax over the codes generation may emit) are exactly the
codes greedy generation produced for the same reply."""

import pytest
import torch

from omni_hf import OmniForConditionalGeneration
from omni_hf.omni import StreamStats
from omni_hf.processing import OmniProcessor
from omni_hf.testing.media import make_image, make_waveform
from omni_hf.training.talker_data import talker_training_example

GREEDY = dict(
    thinker_do_sample=False,
    thinker_max_new_tokens=6,
    talker_do_sample=False,
    talker_repetition_penalty=1.0,
    talker_max_new_tokens=12,
    return_audio=True,
)


@pytest.fixture(scope="module")
def omni(tiny_omni_dir):
    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    return model, OmniProcessor.from_pretrained(tiny_omni_dir)


def _conversation(with_media: bool):
    content = [{"type": "text", "text": "What is this?"}]
    if with_media:
        audio = {"type": "audio", "audio": make_waveform(duration=1.2, sampling_rate=16000)}
        content = [audio, {"type": "image", "image": make_image(112, 84)}, *content]
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("with_media", [False, True], ids=["text", "audio+image"])
def test_example_reproduces_greedy_generation(omni, with_media):
    model, processor = omni
    inputs = processor.apply_chat_template(
        _conversation(with_media), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    inputs = dict(inputs)
    assert with_media == ("pixel_values" in inputs and "input_features" in inputs)
    stats = [e for e in model.stream(**inputs, speaker="Ethan", **GREEDY) if isinstance(e, StreamStats)][0]
    codes = torch.tensor(stats.speech_code_ids)
    assert len(codes) >= 4
    reply = torch.tensor([stats.token_ids])
    eos = model.thinker.generation_config.eos_token_id
    ends = [i for i, t in enumerate(stats.token_ids) if t in (eos if isinstance(eos, list) else [eos])]
    # The Thinker never feeds back its last token (the end token, or the one max_new_tokens stopped at), so the
    # Talker never reads that token's entry: the spoken reply is everything before it.
    reply = reply[:, : ends[0]] if ends else reply[:, :-1]
    media = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    example = talker_training_example(
        model, inputs["input_ids"], reply, codes, model.speakers["Ethan"].bos_token_id, media=media
    )
    with torch.no_grad():
        logits = model.talker(**{k: v for k, v in example.items() if k != "labels"}).logits[0]
    allowed = torch.ones(logits.shape[-1], dtype=torch.bool)
    allowed[model.talker.generation_config.suppress_tokens] = False
    labelled = (example["labels"][0] != -100).nonzero().flatten()
    predicted = logits[labelled - 1].masked_fill(~allowed, float("-inf")).argmax(-1)
    # the last label is the end token the stream stopped at (or, cut by max_new_tokens, a code it never sampled)
    assert torch.equal(predicted[: len(codes)], codes)
    if not with_media:
        return
    other = media | {"pixel_values": media["pixel_values"] + 0.5}  # another picture: the media are really read
    changed = talker_training_example(model, inputs["input_ids"], reply, codes, 1015, media=other)
    assert (changed["inputs_embeds"] - example["inputs_embeds"]).abs().max() > 1e-3


def test_bad_media(omni):
    model, _ = omni
    with pytest.raises(ValueError, match="unknown keys"):
        talker_training_example(
            model, torch.tensor([[1, 2]]), torch.tensor([[3, 4]]), torch.tensor([5]), 1014, media={"pixels": 1}
        )
