"""LoRA voice adapters: the recipe trains through its real entry point, only adapter weights change, voices switch
per request (and per batch row), disabling restores the base exactly, merging bakes one in; bad input."""

import json
from pathlib import Path

import pytest
import torch

from helpers.recipes import load_recipe
from omni_hf import OmniForConditionalGeneration
from omni_hf.training.voice_lora import load_rows

PROMPT = torch.tensor([[1001, 5, 6, 7, 8, 1002, 1001, 9, 10]])
GREEDY = dict(thinker_max_new_tokens=5, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=16)


def _recipe():
    return load_recipe("voice_lora")


@pytest.fixture(scope="module")
def trained_voice(tiny_voice_model_dir, tmp_path_factory):
    """The recipe, 3 steps on the synthetic stand-in voice: the saved adapter and the metrics."""
    out = tmp_path_factory.mktemp("voice_run")
    argv = ["--model", str(tiny_voice_model_dir), "--data", "synthetic:4", "--voice", "robo", "--output_dir", str(out)]
    metrics = _recipe().main([*argv, "--max_steps", "3", "--learning_rate", "0.01", "--batch_size", "2"])
    return Path(metrics["adapter_dir"]), metrics


def _talker_logits(model, voice=None, batch=1):
    with torch.no_grad(), model.voice_adapters.use(voice):
        embeds = torch.randn(batch, 12, model.talker.config.embedding_size, generator=torch.Generator().manual_seed(0))
        codes = torch.full((batch, 12), model.talker.config.tts_codec_mask_token_id)
        return model.talker(input_ids=codes, inputs_embeds=embeds).logits


def test_recipe_trains_only_the_adapter(trained_voice, tiny_voice_model_dir):
    adapter_dir, metrics = trained_voice
    assert metrics["steps"] == 3 and metrics["loss_after"] < metrics["loss_before"]
    assert {"adapter_config.json", "adapter_model.safetensors", "voice.json", "README.md"} <= {
        p.name for p in adapter_dir.iterdir()
    }
    assert "library_name: peft" in (adapter_dir / "README.md").read_text()
    assert "token2wav's DiT" not in (adapter_dir / "README.md").read_text()  # a Talker-only voice
    from safetensors.torch import load_file

    lora = load_file(adapter_dir / "adapter_model.safetensors")
    assert lora and all("lora_" in k for k in lora)
    assert any(v.abs().max() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at zero: it was trained
    base = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir)
    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir)
    model.voice_adapters.load(adapter_dir)
    base_weights = base.talker.state_dict()
    for name, tensor in model.talker.state_dict().items():
        if "lora_" not in name:  # frozen base weights are exactly the checkpoint's
            assert torch.equal(tensor, base_weights[name.replace("base_layer.", "")]), name


def test_switching_disabling_batching_and_merging(trained_voice, tiny_voice_model_dir, tmp_path):
    adapter_dir, _ = trained_voice
    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir).eval()
    model.token2wav.set_progress_bar_config(disable=True)
    base = _talker_logits(model)
    assert model.voice_adapters.load(adapter_dir) == "robo"
    assert model.voice_adapters.load(adapter_dir, name="robo2") == "robo2"
    with torch.no_grad():  # make the second voice different
        for name, p in model.voice_adapters.peft.named_parameters():
            if "lora_B" in name and "robo2" in name:
                p.add_(0.05)
    robo, robo2 = _talker_logits(model, "robo"), _talker_logits(model, "robo2")
    assert (robo - base).abs().max() > 1e-4 and (robo2 - robo).abs().max() > 1e-4
    assert torch.equal(_talker_logits(model, None), base)  # voice=None: exactly the base Talker
    mixed = _talker_logits(model, ["robo", None], batch=2)  # one voice per row
    assert (mixed[0] - robo[0]).abs().max() < 1e-5
    assert (mixed[1] - _talker_logits(model, None, batch=2)[1]).abs().max() < 1e-5
    assert (mixed[1] - _talker_logits(model, "robo", batch=2)[1]).abs().max() > 1e-4
    seq_a, wave_a = model.generate(PROMPT, voice_adapter="robo", generator=torch.Generator().manual_seed(0), **GREEDY)
    seq_b, wave_b = model.generate(PROMPT, voice_adapter=None, generator=torch.Generator().manual_seed(0), **GREEDY)
    assert torch.equal(seq_a, seq_b)  # the Thinker is untouched
    assert list(model.stream(PROMPT, voice_adapter="robo", **GREEDY))[-1].speech_codes == 16
    with pytest.raises(ValueError, match="Voice adapters"):
        model.save_pretrained(tmp_path / "refused")
    model.voice_adapters.merge("robo")
    assert model.voice_adapters.names == [] and (_talker_logits(model) - robo).abs().max() < 1e-4
    model.save_pretrained(tmp_path / "merged")  # a plain model again
    again = OmniForConditionalGeneration.from_pretrained(tmp_path / "merged")
    assert (_talker_logits(again) - robo).abs().max() < 1e-4


def test_bad_input(trained_voice, tiny_voice_model_dir, tmp_path, foreign_voice):
    adapter_dir, _ = trained_voice
    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir)
    with pytest.raises(ValueError, match="No voice adapters"):
        with model.voice_adapters.use("robo"):
            pass
    model.voice_adapters.load(adapter_dir)
    with pytest.raises(ValueError, match="loaded already"):
        model.voice_adapters.load(adapter_dir)
    with pytest.raises(ValueError, match="Unknown voice"):
        model.generate(PROMPT, voice_adapter="nobody", **GREEDY)
    foreign = foreign_voice(adapter_dir, "talker", 64)
    with pytest.raises(ValueError, match="another base model"):
        model.voice_adapters.load(foreign, name="foreign")
    recipe = _recipe()
    manifest = tmp_path / "data.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav"}) + "\n")
    with pytest.raises(ValueError, match="needs 'text'"):
        load_rows(str(manifest), None, 0)
    manifest.write_text(json.dumps({"text": "hi", "audio": "a.wav"}) + "\n")
    with pytest.raises(ValueError, match="--speech_tokenizer"):
        load_rows(str(manifest), None, 0)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("user file")
    with pytest.raises(SystemExit, match="not empty"):
        recipe.main(["--model", str(tiny_voice_model_dir), "--data", "synthetic:2", "--output_dir", str(busy)])
    assert (busy / "keep.txt").read_text() == "user file"


def test_overwrite_replaces_a_loaded_voice_only_when_the_new_one_fits(
    trained_voice, tiny_voice_model_dir, tmp_path, foreign_voice
):
    adapter_dir, _ = trained_voice
    model = OmniForConditionalGeneration.from_pretrained(tiny_voice_model_dir).eval()
    model.voice_adapters.load(adapter_dir)
    saved = _talker_logits(model, "robo")
    with torch.no_grad():  # the loaded voice drifts away from its saved weights
        for name, p in model.voice_adapters.peft.named_parameters():
            if "lora_B" in name and ".robo." in name:
                p.add_(0.05)
    drifted = _talker_logits(model, "robo")
    assert (drifted - saved).abs().max() > 1e-4
    with pytest.raises(ValueError, match="overwrite=True"):
        model.voice_adapters.load(adapter_dir)
    foreign = foreign_voice(adapter_dir, "talker", 64)
    with pytest.raises(ValueError, match="another base model"):
        model.voice_adapters.load(foreign, name="robo", overwrite=True)
    assert model.voice_adapters.names == ["robo"] and torch.equal(_talker_logits(model, "robo"), drifted)  # kept
    assert model.voice_adapters.load(adapter_dir, overwrite=True) == "robo"
    assert model.voice_adapters.names == ["robo"] and torch.allclose(_talker_logits(model, "robo"), saved, atol=1e-6)
    model.voice_adapters.remove("robo")
    assert model.voice_adapters.names == [] and model.voice_adapters.peft is None
    with pytest.raises(ValueError, match="Invalid voice name"):
        model.voice_adapters.load(adapter_dir, name="a.b")
