"""Official-layout folders (`model_type: qwen2_5_omni`, what `Qwen/Qwen2.5-Omni-7B` is) and the Auto classes.

By default transformers' own classes stay theirs, and the Auto classes transformers has no class for raise an error
naming `omni-hf convert` and the opt-in; `omni_hf.register_for_official_checkpoints()` (process-wide, so checked in a
fresh interpreter) makes every Auto class and the pipelines build omni_hf's classes, with the same weights as
`OmniForConditionalGeneration.from_pretrained(official)`. `omni-hf export` writes the official processor configs."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForMultimodalLM,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5OmniForConditionalGeneration,
)

from omni_hf import OmniForConditionalGeneration, OmniProcessor, cli
from omni_hf.testing.media import write_image, write_wav

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def exported(tiny_omni_dir, tmp_path_factory):
    """An official-layout folder with processor files: `omni-hf export` of the tiny model."""
    folder = tmp_path_factory.mktemp("official_export") / "official"
    assert cli.main(["export", str(tiny_omni_dir), str(folder)]) == 0
    return folder


def test_default_keeps_transformers_classes_and_names_the_ways_to_ours(official_full):
    assert type(AutoModelForMultimodalLM.from_pretrained(official_full)) is Qwen2_5OmniForConditionalGeneration
    for auto in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
        with pytest.raises(ValueError) as error:
            auto.from_pretrained(official_full)
        message = str(error.value)
        assert f"transformers has no {auto.__name__} class" in message, message
        assert "omni-hf convert" in message and "register_for_official_checkpoints()" in message


def test_opt_in_resolves_every_auto_class_and_pipeline_to_omni_hf(exported, tmp_path):
    reference = OmniForConditionalGeneration.from_pretrained(exported)
    torch.save({k: v for k, v in reference.state_dict().items() if not k.startswith("token2wav.")}, tmp_path / "w.pt")
    image = write_image(tmp_path / "i.png", 56, 56)
    script = f"""
        import torch, transformers.pipelines.any_to_any as any_to_any
        from unittest import mock
        import omni_hf
        from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText,
                                  AutoModelForMultimodalLM, AutoModelForTextToWaveform, pipeline)
        path, expected = {str(exported)!r}, torch.load({str(tmp_path / "w.pt")!r}, weights_only=True)
        omni_hf.register_for_official_checkpoints()
        for auto in (AutoModel, AutoModelForMultimodalLM, AutoModelForTextToWaveform):
            model = auto.from_pretrained(path)
            assert type(model) is omni_hf.OmniForConditionalGeneration, (auto, type(model))
            assert model.has_talker and sorted(model.speakers.names()) == ["Chelsie", "Ethan"]
            state = model.state_dict()
            assert all(torch.equal(state[k], v) for k, v in expected.items())
        text_only = AutoModelForMultimodalLM.from_pretrained(path, enable_audio_output=False)
        assert text_only.talker is None  # config kwargs still reach the translated config
        for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
            thinker = auto.from_pretrained(path)
            assert isinstance(thinker, omni_hf.OmniThinkerForConditionalGeneration), type(thinker)
            assert torch.equal(thinker.lm_head.weight, expected["thinker.lm_head.weight"])
        processor = omni_hf.OmniProcessor.from_pretrained(path)
        with mock.patch.object(any_to_any, "requires_backends", lambda *args, **kwargs: None):
            pipe = pipeline("any-to-any", model=path, processor=processor)
        assert type(pipe.model) is omni_hf.OmniForConditionalGeneration
        chat = [{{"role": "user", "content": [{{"type": "image", "image": {image!r}}},
                                           {{"type": "text", "text": "Describe"}}]}}]
        out = pipe(text=chat, max_new_tokens=3, do_sample=False, return_full_text=False)
        assert isinstance(out[0]["generated_text"], str)
        pipe = pipeline("image-text-to-text", model=path, processor=processor)
        assert isinstance(pipe.model, omni_hf.OmniThinkerForConditionalGeneration)
        print("OPT_IN_OK")
    """
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0 and "OPT_IN_OK" in result.stdout, result.stderr[-4000:]


def test_export_writes_the_official_processor_configs(tiny_omni_dir, exported, tmp_path):
    preprocessor = json.loads((exported / "preprocessor_config.json").read_text())
    assert preprocessor["processor_class"] == "Qwen2_5OmniProcessor"
    assert preprocessor["feature_extractor_type"] == "WhisperFeatureExtractor"
    assert preprocessor["image_processor_type"] == "Qwen2VLImageProcessor" and "auto_map" not in preprocessor
    video = json.loads((exported / "video_preprocessor_config.json").read_text())
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor" and video["fps"] == 2.0
    ours = OmniProcessor.from_pretrained(tiny_omni_dir)
    wave = np.sin(np.arange(16000) / 9.0).astype(np.float32)
    features = AutoFeatureExtractor.from_pretrained(exported)(wave, sampling_rate=16000, return_tensors="np")
    expected = ours.feature_extractor(wave, sampling_rate=16000, return_tensors="np")
    assert np.array_equal(features["input_features"], expected["input_features"])
    image = write_image(tmp_path / "i.png", 112, 84)
    from PIL import Image

    pixels = AutoImageProcessor.from_pretrained(exported)(Image.open(image), return_tensors="pt")
    ours_pixels = ours(text=["<|vision_bos|><|IMAGE|><|vision_eos|>"], images=[image], return_tensors="pt")
    assert torch.equal(pixels["image_grid_thw"], ours_pixels["image_grid_thw"])
    assert torch.allclose(pixels["pixel_values"], ours_pixels["pixel_values"], atol=1e-6)
    text = "Hello <|im_end|> there"
    assert AutoTokenizer.from_pretrained(exported)(text)["input_ids"] == ours.tokenizer(text)["input_ids"]
    write_wav(tmp_path / "a.wav", duration=1.0, sampling_rate=16000)
    try:
        import torchvision  # noqa: F401

        has_torchvision = True
    except Exception:  # not installed, or a build that does not load with this torch
        has_torchvision = False
    if has_torchvision:
        processor = AutoProcessor.from_pretrained(exported)
        assert type(processor).__name__ == "Qwen2_5OmniProcessor"
        batch = processor(text=["<|vision_bos|><|IMAGE|><|vision_eos|>Hi"], images=[str(image)], return_tensors="pt")
        ours_batch = ours(text=["<|vision_bos|><|IMAGE|><|vision_eos|>Hi"], images=[image], return_tensors="pt")
        assert torch.equal(batch["input_ids"], ours_batch["input_ids"])
    else:  # everything is found; transformers' Qwen2_5OmniProcessor itself needs torchvision for its video part
        with pytest.raises(ImportError, match="Qwen2VLVideoProcessor requires the Torchvision"):
            AutoProcessor.from_pretrained(exported)
