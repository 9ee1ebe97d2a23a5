"""PEFT adapters on the full model, the way PEFT and transformers users load them: `model.load_adapter(path)` loads
a Talker (voice) adapter, a Thinker adapter or a full-model adapter where it belongs, or refuses one that fits
nowhere; `PeftModel.from_pretrained(full_model, voice_adapter)` raises instead of loading nothing; adapters loaded
through transformers switch off and on with `disable_adapters()` / `enable_adapters()` on PEFT 0.21."""

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("peft")
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

from omni_hf import OmniForConditionalGeneration  # noqa: E402

IDS = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9]])


def _randomize_lora_b(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def _load(folder):
    return OmniForConditionalGeneration.from_pretrained(folder).eval()


def _thinker_logits(model):
    with torch.no_grad():
        return model.thinker(input_ids=IDS).logits


def _lora_b(model, prefix=""):
    return {
        n.split(".lora_B")[0].removeprefix("base_model.model."): p.detach().clone()
        for n, p in model.named_parameters()
        if "lora_B" in n and n.startswith(prefix)
    }


@pytest.fixture(scope="module")
def voice_dir(tiny_omni_dir, tmp_path_factory):
    model = _load(tiny_omni_dir)
    model.voice_adapters.add("bright")
    _randomize_lora_b(model.voice_adapters.peft)
    return model.voice_adapters.save("bright", tmp_path_factory.mktemp("voice"))


@pytest.fixture(scope="module")
def thinker_adapter_dir(tiny_omni_dir, tmp_path_factory):
    thinker = _load(tiny_omni_dir).thinker
    peft_model = get_peft_model(thinker, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    _randomize_lora_b(peft_model, seed=1)
    folder = tmp_path_factory.mktemp("thinker_adapter")
    peft_model.save_pretrained(folder)
    return folder


def test_voice_adapter_through_load_adapter_goes_to_voice_adapters(tiny_omni_dir, voice_dir, caplog):
    model = _load(tiny_omni_dir)
    with caplog.at_level("WARNING"):
        name = model.load_adapter(str(voice_dir))
    assert name == "bright" and model.voice_adapters.names == ["bright"]
    assert "voice_adapter='bright'" in caplog.text
    saved = load_file(voice_dir / "adapter_model.safetensors")
    loaded = _lora_b(model.voice_adapters.peft)
    assert len(loaded) == len([k for k in saved if "lora_B" in k]) > 0
    for key, tensor in saved.items():
        if "lora_B" in key:
            module = key.removeprefix("base_model.model.").split(".lora_B")[0]
            assert torch.equal(loaded[module], tensor), key  # every tensor loaded, none missing


def test_peft_model_from_pretrained_on_the_full_model_refuses_a_voice_adapter(tiny_omni_dir, voice_dir):
    config = json.loads((voice_dir / "adapter_config.json").read_text())
    assert config["target_modules"].startswith("^model\\.layers")  # the Talker's own names only
    with pytest.raises(ValueError, match="Target modules"):
        PeftModel.from_pretrained(_load(tiny_omni_dir), str(voice_dir))
    talker = _load(tiny_omni_dir).talker  # on the Talker it was trained on, it loads every tensor
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "missing adapter keys", no gradient_checkpointing FutureWarning
        peft_talker = PeftModel.from_pretrained(talker, str(voice_dir))
    assert len(_lora_b(peft_talker)) == 14


def test_thinker_adapter_loads_into_the_thinker_and_switches_off_and_on(tiny_omni_dir, thinker_adapter_dir):
    model = _load(tiny_omni_dir)
    base = _thinker_logits(model)
    assert model.load_adapter(str(thinker_adapter_dir)) == "default"
    adapted = _thinker_logits(model)
    assert (adapted - base).abs().max() > 1e-3  # the adapter is active
    model.disable_adapters()
    assert torch.equal(_thinker_logits(model), base)
    model.enable_adapters()
    assert torch.equal(_thinker_logits(model), adapted)
    model.thinker.disable_adapters()  # the Thinker's own switch too
    assert torch.equal(_thinker_logits(model), base)


def test_full_model_adapter_uses_transformers_load_adapter(tiny_omni_dir, tmp_path):
    trained = _load(tiny_omni_dir)
    config = LoraConfig(r=4, target_modules=r"thinker\.model\.layers\.\d+\.self_attn\.q_proj")
    peft_model = get_peft_model(trained, config)
    _randomize_lora_b(peft_model, seed=2)
    peft_model.save_pretrained(tmp_path / "full_adapter")
    expected = _lora_b(peft_model)
    model = _load(tiny_omni_dir)
    base = _thinker_logits(model)
    assert model.load_adapter(str(tmp_path / "full_adapter"), adapter_name="mine") == "mine"
    loaded = {k.replace(".mine", ""): v for k, v in _lora_b(model).items()}
    assert sorted(loaded) == sorted(k.replace(".default", "") for k in expected) and len(loaded) == 2
    for key, tensor in expected.items():
        assert torch.equal(loaded[key.replace(".default", "")], tensor)
    assert (_thinker_logits(model) - base).abs().max() > 1e-3
    model.disable_adapters()
    assert torch.equal(_thinker_logits(model), base)


def test_adapter_that_fits_nothing_is_refused_before_injection(tiny_omni_dir, thinker_adapter_dir, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "adapter_config.json").write_text((thinker_adapter_dir / "adapter_config.json").read_text())
    tensors = load_file(thinker_adapter_dir / "adapter_model.safetensors")
    from safetensors.torch import save_file

    save_file(
        {k: torch.cat([v, v], dim=-1) if "lora_A" in k else v for k, v in tensors.items()},
        foreign / "adapter_model.safetensors",
    )
    model = _load(tiny_omni_dir)
    with pytest.raises(ValueError, match="fits neither this model, its Thinker nor its Talker"):
        model.load_adapter(str(foreign))
    assert not any("lora" in name for name, _ in model.named_modules())  # nothing injected
    with pytest.raises(ValueError, match="not a PEFT adapter"):
        model.load_adapter(str(tmp_path))
    with pytest.raises(ValueError, match="No adapter loaded"):
        model.disable_adapters()
