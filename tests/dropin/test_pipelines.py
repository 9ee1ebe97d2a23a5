"""transformers' pipelines with omni_hf models: any-to-any (text, audio, image, video in; text and speech out),
image-text-to-text, text-to-audio, and text streaming with `TextIteratorStreamer`."""

from threading import Thread
from unittest import mock

import numpy as np
import pytest
import torch
import transformers.pipelines.any_to_any as any_to_any
from transformers import TextIteratorStreamer, pipeline

from omni_hf import OmniForConditionalGeneration, OmniProcessor, OmniThinkerForConditionalGeneration
from omni_hf.testing.media import write_image, write_video, write_wav

SPEECH = {"thinker_max_new_tokens": 3, "talker_max_new_tokens": 8, "token2wav_num_inference_steps": 3}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline_media")
    return {
        "image": write_image(folder / "i.png", 112, 84),
        "audio": write_wav(folder / "a.wav", duration=1.0, sampling_rate=22050),
        "video": write_video(folder / "v.mp4", duration=1.0, with_audio=True),
    }


def _chat(media, kinds):
    content = [{"type": kind, kind: media[kind]} for kind in kinds] + [{"type": "text", "text": "What is this?"}]
    return [{"role": "user", "content": content}]


def test_any_to_any_text_and_speech(tiny_omni_dir, media):
    # transformers' any-to-any pipeline demands torchvision for image/video models; omni_hf's processor does not use
    # it, and torchvision's PyPI build does not load with this CPU torch: the check is lifted, nothing else.
    with mock.patch.object(any_to_any, "requires_backends", lambda *args, **kwargs: None):
        pipe = pipeline("any-to-any", model=str(tiny_omni_dir))
    assert type(pipe.model) is OmniForConditionalGeneration and type(pipe.processor) is OmniProcessor
    messages = _chat(media, ["image", "audio", "video"])
    inputs = pipe.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    expected = pipe.model.generate(**inputs, max_new_tokens=4, do_sample=False, return_audio=False)
    text = pipe(text=messages, max_new_tokens=4, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert text == pipe.processor.decode(expected[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    spoken = pipe(text=messages, generation_mode="audio", generate_kwargs=SPEECH)[0]["generated_audio"]
    assert isinstance(spoken, np.ndarray) and spoken.ndim == 1 and spoken.size % 480 == 0 and spoken.size > 0


def test_image_text_to_text_on_full_and_thinker_folders(tiny_omni_dir, media, tmp_path):
    OmniThinkerForConditionalGeneration.from_pretrained(tiny_omni_dir).save_pretrained(tmp_path / "thinker")
    OmniProcessor.from_pretrained(tiny_omni_dir).save_pretrained(tmp_path / "thinker")
    messages = _chat(media, ["image"])
    replies = []
    for folder in (tiny_omni_dir, tmp_path / "thinker"):
        pipe = pipeline("image-text-to-text", model=str(folder))
        assert isinstance(pipe.model, OmniThinkerForConditionalGeneration)
        out = pipe(text=messages, max_new_tokens=4, do_sample=False, return_full_text=False)
        replies.append(out[0]["generated_text"])
    assert replies[0] == replies[1] and replies[0]


def test_text_to_audio(tiny_omni_dir):
    pipe = pipeline("text-to-audio", model=str(tiny_omni_dir))
    out = pipe("Hello", generate_kwargs=SPEECH)
    assert out["sampling_rate"] == 24000
    assert out["audio"].ndim == 1 and out["audio"].size > 0 and out["audio"].size % 480 == 0


def test_text_iterator_streamer(tiny_omni_dir):
    thinker = OmniThinkerForConditionalGeneration.from_pretrained(tiny_omni_dir)
    processor = OmniProcessor.from_pretrained(tiny_omni_dir)
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    expected = thinker.generate(**inputs, max_new_tokens=6, do_sample=False)
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    worker = Thread(
        target=thinker.generate, kwargs={**inputs, "max_new_tokens": 6, "do_sample": False, "streamer": streamer}
    )
    worker.start()
    pieces = list(streamer)
    worker.join()
    text = processor.decode(expected[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "".join(pieces) == text and len(pieces) >= 1
    assert torch.is_tensor(expected)
