"""The Talker's speech length follows the text: a cap derived from the reply unless the caller sets one; speech
arguments on a model without its Talker are refused; the any-to-any pipeline's audio carries its sampling rate; plain
text with an image says how to place it."""

import pickle
from unittest import mock

import numpy as np
import pytest
import torch
import transformers.pipelines.any_to_any as any_to_any
from transformers import pipeline

from omni_hf import OmniForConditionalGeneration
from omni_hf.processing.waveform import Waveform
from omni_hf.talker.speech_budget import (
    TALKER_MAX_CODES,
    cap_for_reply,
    check_speech_arguments,
    speech_code_cap,
    talker_code_budget,
)
from omni_hf.testing.media import write_image

CHAT = [{"role": "user", "content": [{"type": "text", "text": "Say something."}]}]


def test_cap_numbers():
    assert speech_code_cap(0) == 100  # 2 s margin
    assert speech_code_cap(6) == 250  # 5 s for six tokens (was 4096 codes = 82 s)
    assert speech_code_cap(100) == 2600
    assert speech_code_cap(1024) == TALKER_MAX_CODES == 4096
    assert talker_code_budget(None, 6) == 250 and talker_code_budget(None, None) == 4096
    assert talker_code_budget(30, 6) == 30  # the caller's value wins
    assert cap_for_reply(250, 2) == 150 and cap_for_reply(120, 6) == 120
    for bad in (-1, 2.5, True, "6"):
        with pytest.raises(ValueError, match="text_tokens"):
            speech_code_cap(bad)
    with pytest.raises(ValueError, match="talker_max_new_tokens must be at least 1"):
        talker_code_budget(0, 6)
    check_speech_arguments(False, False, ["talker_max_new_tokens"])  # text asked for explicitly: allowed
    check_speech_arguments(True, None, ["talker_max_new_tokens"])
    from omni_hf.cli import _speech_codes, build_parser

    chat = build_parser().parse_args(["chat", "--model", "m"])
    assert chat.max_speech_codes is None and _speech_codes(chat) == {}  # `omni-hf chat` follows the reply too
    assert _speech_codes(build_parser().parse_args(["chat", "--model", "m", "--max-speech-codes", "60"])) == {
        "talker_max_new_tokens": 60
    }


def _talker_budgets(model, **kwargs):
    """The `max_new_tokens` the Talker's generate received (it then runs 2 steps only: the budget is the point here;
    `test_any_to_any_audio_has_its_sampling_rate` runs a whole capped reply)."""
    seen = []
    original = model.talker.generate

    def spy(*args, **inner):
        seen.append(inner["max_new_tokens"])
        return original(*args, **{**inner, "max_new_tokens": 2})

    with mock.patch.object(model.talker, "generate", side_effect=spy):
        model.generate(**kwargs)
    return seen


def test_talker_budget_follows_the_reply(tiny_omni):
    model, processor = tiny_omni
    inputs = processor.apply_chat_template(
        CHAT, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    common = dict(**inputs, thinker_do_sample=False, talker_do_sample=False, token2wav_num_inference_steps=2)
    assert _talker_budgets(model, max_new_tokens=6, thinker_eos_token_id=-1, **common) == [250]  # six reply tokens
    assert _talker_budgets(model, thinker_max_new_tokens=3, thinker_eos_token_id=-1, **common) == [175]
    assert _talker_budgets(model, max_new_tokens=6, talker_max_new_tokens=7, **common) == [7]  # the caller's wins
    # The reply is written first: a reply that ends before max_new_tokens narrows the cap to its own length.
    greedy = model.thinker.generate(**inputs, max_new_tokens=5, do_sample=False, eos_token_id=-1)
    reply = greedy[0, inputs["input_ids"].shape[1] :].tolist()
    stop = next(i for i, token in enumerate(reply) if token not in reply[:i] and i >= 1)  # a token not seen before
    budgets = _talker_budgets(model, max_new_tokens=100, thinker_eos_token_id=reply[stop], **common)
    assert budgets == [speech_code_cap(stop + 1)] and stop + 1 < 100  # not speech_code_cap(100) = 2600


def test_speech_arguments_without_a_talker_are_refused(tiny_omni_dir, tiny_omni):
    _, processor = tiny_omni
    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir).eval()
    model.disable_talker()
    inputs = processor.apply_chat_template(
        CHAT, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with pytest.raises(ValueError, match=r"talker_max_new_tokens given, but this model has no Talker"):
        model.generate(**inputs, max_new_tokens=2, talker_max_new_tokens=30)
    with pytest.raises(ValueError, match=r"token2wav_num_inference_steps given"):
        model.generate(**inputs, max_new_tokens=2, token2wav_num_inference_steps=4)
    text = model.generate(**inputs, max_new_tokens=2, do_sample=False)  # no speech arguments: text, as before
    assert torch.is_tensor(text) and text.shape[1] == inputs["input_ids"].shape[1] + 2
    text = model.generate(**inputs, max_new_tokens=2, do_sample=False, return_audio=False, talker_max_new_tokens=30)
    assert torch.is_tensor(text)  # text asked for explicitly: the speech argument is moot, not an error


def test_any_to_any_audio_has_its_sampling_rate(tiny_omni_dir):
    with mock.patch.object(any_to_any, "requires_backends", lambda *args, **kwargs: None):
        pipe = pipeline("any-to-any", model=str(tiny_omni_dir))
    pipe.model.token2wav.set_progress_bar_config(disable=True)
    kwargs = {"talker_do_sample": False, "token2wav_num_inference_steps": 2, "thinker_eos_token_id": -1}
    out = pipe(text=CHAT, generation_mode="audio", max_new_tokens=6, generate_kwargs=kwargs)[0]["generated_audio"]
    assert isinstance(out, np.ndarray) and isinstance(out, Waveform)
    assert out.sampling_rate == 24000 and out.ndim == 1 and 0 < out.size <= 250 * 480
    assert out.duration == out.size / 24000 <= 5.0  # six tokens of text: at most 5 s of speech, not 82 s
    assert out[:10].sampling_rate == 24000 and (out * 2).sampling_rate == 24000
    assert pickle.loads(pickle.dumps(out)).sampling_rate == 24000
    with pytest.raises(ValueError, match="sampling_rate"):
        Waveform(np.zeros(3), 0)


def test_image_text_to_text_plain_text_says_how(tiny_omni_dir, tmp_path):
    image = write_image(tmp_path / "i.png", 56, 56)
    pipe = pipeline("image-text-to-text", model=str(tiny_omni_dir))
    with pytest.raises(ValueError) as error:
        pipe(images=image, text="Describe", max_new_tokens=2)
    message = str(error.value)
    assert "0 <|IMAGE|> placeholder(s) but 1 images" in message
    assert "pass a chat" in message and "<|vision_bos|><|IMAGE|><|vision_eos|>" in message
    out = pipe(images=image, text="<|vision_bos|><|IMAGE|><|vision_eos|>Describe", max_new_tokens=2)
    assert isinstance(out[0]["generated_text"], str)  # the placeholder placed as the message says: it works
