"""The conductor (one request per call), token2wav as a registered part, and the package's import hygiene."""

import ast
import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from omni_hf.omni.generation_omni import OmniRequest, route_generation_kwargs

PROMPT = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10]])
GREEDY = dict(
    speaker="Chelsie",
    thinker_max_new_tokens=8,
    thinker_do_sample=False,
    talker_do_sample=False,
    talker_max_new_tokens=24,
)
SRC = Path(__file__).resolve().parents[2] / "src" / "omni_hf"


def test_kwargs_are_routed_by_prefix():
    routed = route_generation_kwargs(
        {"thinker_top_k": 3, "talker_do_sample": False, "token2wav_num_inference_steps": 4, "temperature": 0.5}
    )
    assert routed == {
        "thinker": {"top_k": 3, "temperature": 0.5},
        "talker": {"do_sample": False},
        "token2wav": {"num_inference_steps": 4},
    }


def test_one_request_per_call(tiny_omni):
    model, _ = tiny_omni
    layout = {"image_grid_thw": torch.tensor([[1, 4, 4]]), "use_audio_in_video": False}
    request = model.build_request(talker_top_k=5, token2wav_solver="euler", **layout, **GREEDY)
    assert isinstance(request, OmniRequest) and request.speaks
    assert request.speaker is model.speakers["Chelsie"]
    assert request.thinker_kwargs["max_new_tokens"] == 8 and request.thinker_kwargs["do_sample"] is False
    assert request.talker_kwargs == {"max_new_tokens": 24, "do_sample": False, "top_k": 5}
    assert request.token2wav_kwargs == {"solver": "euler"}
    assert set(request.media_layout) == {"image_grid_thw", "use_audio_in_video"}  # for the Talker's TMRoPE ids
    assert "image_grid_thw" in request.thinker_kwargs  # and the Thinker still encodes the media
    assert not model.build_request(return_audio=False).speaks
    with pytest.raises(ValueError, match="Unknown voice adapter 'nobody'"):
        model.build_request(voice_adapter="nobody")
    with pytest.raises(ValueError, match="Unknown speaker 'nobody'"):
        model.build_request(speaker="nobody")


def test_voice_keyword_is_deprecated_but_works(tiny_omni):
    model, _ = tiny_omni
    with pytest.warns(FutureWarning, match="voice_adapter="):
        request = model.build_request(voice=None, **GREEDY)
    assert request.voice_adapter is None
    with pytest.warns(FutureWarning, match="voice_adapter="), pytest.raises(ValueError, match="Unknown voice adapter"):
        model.generate(PROMPT, voice="robo", **GREEDY)
    with pytest.warns(FutureWarning, match="voice_adapters"):
        assert model.voices is model.voice_adapters


def test_generate_and_stream_share_the_request(tiny_omni):
    model, processor = tiny_omni
    sequences, waveform = model.generate(PROMPT, generator=torch.Generator().manual_seed(3), **GREEDY)
    events = list(model.stream(PROMPT, generator=torch.Generator().manual_seed(3), tokenizer=processor, **GREEDY))
    streamed = torch.cat([torch.from_numpy(e.audio) for e in events if type(e).__name__ == "AudioChunk"])
    assert events[-1].token_ids == sequences[0, PROMPT.shape[1] :].tolist()
    assert streamed.shape == waveform.shape and (streamed - waveform).abs().max() < 1e-4


def test_token2wav_is_a_registered_part(tiny_omni, tmp_path):
    model, _ = tiny_omni
    model = copy.deepcopy(model)
    t2w = sum(p.numel() for p in model.token2wav.dit.parameters()) + sum(
        p.numel() for p in model.token2wav.vocoder.parameters()
    )
    parts = sum(p.numel() for part in (model.thinker, model.talker) for p in part.parameters())
    assert t2w > 0 and model.num_parameters() == parts + t2w
    keys = model.state_dict().keys()
    assert any(k.startswith("token2wav.dit.") for k in keys) and any(k.startswith("token2wav.vocoder.") for k in keys)
    assert isinstance(model.token2wav, torch.nn.Module) and "token2wav" in dict(model.named_children())

    model.to(torch.bfloat16)  # token2wav follows devices, never dtypes, unless asked
    assert model.thinker.dtype == torch.bfloat16 and model.talker.dtype == torch.bfloat16
    assert model.token2wav.dit.dtype == torch.float32 and model.token2wav.vocoder.dtype == torch.float32
    model.half()
    assert model.token2wav.dit.dtype == torch.float32
    model.float()
    model.token2wav.to(torch.bfloat16)  # asked explicitly
    assert model.token2wav.dit.dtype == torch.bfloat16
    model.token2wav.float()

    model.train()  # token2wav keeps its own mode (its DiT has dropout)
    assert model.thinker.training and not model.token2wav.dit.training
    model.eval()

    assert model.can_generate() and model.generation_config is model.thinker.generation_config
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        assert not [k for k in handle.keys() if k.startswith("token2wav.")]  # saved as its own pipeline folder
    assert json.loads((tmp_path / "token2wav" / "model_index.json").read_text())["_class_name"]
    assert (tmp_path / "generation_config.json").is_file()
    reloaded = type(model).from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name


def _private_imports() -> list[str]:
    """`from <omni_hf module> import _name` anywhere in the package."""
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("omni_hf")):
                found += [
                    f"{path.relative_to(SRC)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_no_module_imports_another_modules_private_names():
    assert _private_imports() == []


def test_prompt_and_reply_beyond_the_context_are_refused_before_work(tiny_omni):
    model, _ = tiny_omni
    context = model.thinker.config.get_text_config().max_position_embeddings
    for call in (model.generate, model.stream):
        with pytest.raises(ValueError, match=f"context of {context}"):
            call(PROMPT, **(GREEDY | {"thinker_max_new_tokens": context}))


def test_a_stream_started_in_inference_mode_continues_outside_it(tiny_omni):
    """A Space's generator can be resumed on another thread, where `torch.inference_mode` is not active."""
    model, _ = tiny_omni
    plain = list(model.stream(PROMPT, **GREEDY))[-1].token_ids
    stream = model.stream(PROMPT, **GREEDY)
    with torch.inference_mode():
        head = [next(stream), next(stream)]  # the prefill and a first decode step
    events = head + list(stream)
    assert events[-1].token_ids == plain
