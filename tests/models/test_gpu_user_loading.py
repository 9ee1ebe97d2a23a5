"""The GPU user's loading paths, run on CPU: every part loads with `dtype=torch.bfloat16`, with `torch_dtype=` and with
`device_map="auto"`, and speaks. token2wav keeps float32 on purpose (as the official model does) whichever entry
point loaded it, and says so once when another dtype was asked for."""

import logging

import pytest
import torch
from diffusers import DiffusionPipeline

from omni_hf import (
    OmniForConditionalGeneration,
    OmniTalkerForConditionalGeneration,
    OmniThinkerForConditionalGeneration,
    OmniToken2WavPipeline,
)
from omni_hf.voices.adapters import voice_lora_config

LOADING = [
    pytest.param({"dtype": torch.bfloat16}, id="dtype"),
    pytest.param({"torch_dtype": torch.bfloat16}, id="torch_dtype"),
    pytest.param({"dtype": torch.bfloat16, "device_map": "auto"}, id="device_map"),
]


def _speak(model, processor, **kwargs):
    conversation = [{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}]
    inputs = processor.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    speech = dict(speaker="Chelsie", thinker_max_new_tokens=4, thinker_do_sample=False, talker_do_sample=False)
    return model.generate(**inputs, **speech, talker_max_new_tokens=24, **kwargs)


@pytest.mark.parametrize("loading", LOADING)
def test_full_model_loads_in_bf16_and_speaks(tiny_omni_dir, tiny_omni, loading):
    _, processor = tiny_omni
    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir, **loading).eval()
    assert model.thinker.dtype == model.talker.dtype == torch.bfloat16
    assert model.token2wav.dit.dtype == model.token2wav.vocoder.dtype == torch.float32  # on purpose
    model.token2wav.set_progress_bar_config(disable=True)
    text_ids, waveform = _speak(model, processor)
    assert text_ids.shape[0] == 1 and waveform.dtype == torch.float32
    assert waveform.numel() > 0 and torch.isfinite(waveform).all()


@pytest.mark.parametrize("loading", LOADING)
def test_thinker_and_talker_load_in_bf16(tiny_omni_dir, loading):
    thinker = OmniThinkerForConditionalGeneration.from_pretrained(tiny_omni_dir, **loading).eval()
    assert thinker.dtype == torch.bfloat16
    ids = torch.tensor([[1, 2, 3, 4]])
    out = thinker.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)
    talker = OmniTalkerForConditionalGeneration.from_pretrained(tiny_omni_dir, **loading).eval()
    assert talker.dtype == torch.bfloat16


@pytest.mark.parametrize("loading", LOADING)
def test_token2wav_pipeline_keeps_float32_whichever_entry_point(tiny_omni_dir, tiny_omni, loading, caplog):
    model, _ = tiny_omni
    speaker = model.speakers["Chelsie"]
    codes = torch.randint(0, 100, (1, 20))
    folder = tiny_omni_dir / "token2wav"
    caplog.set_level(logging.WARNING)
    ours = OmniToken2WavPipeline.from_pretrained(folder, **loading)
    if loading.get("device_map") == "auto":  # diffusers' own pipelines take "balanced"/"cpu"/"cuda", not "auto"
        generic = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True, **{**loading, "device_map": "cpu"})
    else:
        generic = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True, **loading)
    for pipe in (ours, generic):
        assert pipe.dit.dtype == pipe.vocoder.dtype == torch.float32
        pipe.set_progress_bar_config(disable=True)
    assert "keeps float32" in caplog.text
    outputs = []
    for pipe in (ours, generic, model.token2wav):
        noise = torch.Generator().manual_seed(0)
        kwargs = dict(
            reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding, generator=noise
        )
        outputs.append(pipe(codes, num_inference_steps=3, **kwargs).audios)
    assert outputs[0].dtype == torch.float32 and outputs[0].numel() == 20 * 2 * 240
    torch.testing.assert_close(outputs[0], outputs[2], rtol=0, atol=0)  # the same as the full model's token2wav
    torch.testing.assert_close(outputs[1], outputs[2], rtol=0, atol=0)


def test_token2wav_cast_explicitly_runs_in_bf16(tiny_omni_dir, tiny_omni):
    model, _ = tiny_omni
    speaker = model.speakers["Chelsie"]
    pipe = OmniToken2WavPipeline.from_pretrained(tiny_omni_dir / "token2wav").to(torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.dit.dtype == pipe.vocoder.dtype == torch.bfloat16
    noise = torch.Generator().manual_seed(0)
    audio = pipe(torch.randint(0, 100, (1, 20)), reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding,
                 num_inference_steps=3, generator=noise).audios  # fmt: skip
    assert audio.shape[-1] == 20 * 2 * 240 and torch.isfinite(audio.float()).all()


def test_voice_adapter_on_a_bf16_model_speaks(tiny_omni_dir, tiny_omni, tmp_path):
    _, processor = tiny_omni
    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir, dtype=torch.bfloat16).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    model.voice_adapters.add("warm", voice_lora_config(r=4))
    saved = model.voice_adapters.save("warm", tmp_path / "warm")
    model.voice_adapters.unload()
    reloaded = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir, torch_dtype=torch.bfloat16).eval()
    reloaded.token2wav.set_progress_bar_config(disable=True)
    name = reloaded.voice_adapters.load(saved)
    assert {p.dtype for n, p in reloaded.talker.named_parameters() if "lora_" in n} <= {torch.bfloat16, torch.float32}
    _, waveform = _speak(reloaded, processor, voice=name)
    assert waveform.numel() > 0 and torch.isfinite(waveform).all()
